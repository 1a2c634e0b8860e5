// The 8x22B projection's arithmetic against numbers computed by hand (and in the comments), so a
// change to the model shows up as a changed figure, not a silently different table.

import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  busiestHostSeconds,
  expertSeconds,
  H100_BF16,
  hostsTouched,
  kDistributionFromAverage,
  mixtralDenseParamsPerLayer,
  type ProjectionInputs,
  project,
  projectCell,
} from '../../../coordinator/scale/projection.js';
import { mixtral8x22b } from '../../../coordinator/scale/projection-report.js';
import { runCli } from '../../helpers/cli.js';

describe('projection arithmetic', () => {
  it('expected hosts a token touches: N (1 - C(E - E/N, k) / C(E, k))', () => {
    // 2 hosts: 1 - C(4,2)/C(8,2) = 1 - 6/28 -> 2 x 22/28 = 11/7.
    expect(hostsTouched(2, 8, 2)).toBeCloseTo(11 / 7, 12);
    // 4 hosts: 4 x (1 - C(6,2)/28) = 4 x 13/28 = 13/7.
    expect(hostsTouched(2, 8, 4)).toBeCloseTo(13 / 7, 12);
    // 8 hosts: every expert on its own host.
    expect(hostsTouched(2, 8, 8)).toBeCloseTo(2, 12);
    expect(hostsTouched(1, 8, 4)).toBeCloseTo(1, 12);
    expect(hostsTouched(0, 8, 4)).toBe(0);
  });

  it('8x22B dense part per layer and the K distribution of an average', () => {
    // q, o: 6144^2 each; k, v: 6144 x (8 x 128) each; router 6144 x 8; two norms of 6144.
    expect(mixtralDenseParamsPerLayer({ hidden: 6144, heads: 48, kvHeads: 8, numExperts: 8 })).toBe(
      2 * 37_748_736 + 2 * 6_291_456 + 49_152 + 12_288,
    );
    expect(mixtral8x22b().denseParamsPerLayer).toBe(88_141_824);
    const p = kDistributionFromAverage(1.42, 2);
    expect(p[0]).toBe(0);
    expect(p[1]).toBeCloseTo(0.58, 12);
    expect(p[2]).toBeCloseTo(0.42, 12);
    expect(kDistributionFromAverage(0.5, 2)).toEqual([0.5, 0.5, 0]);
  });

  const inputs: ProjectionInputs = {
    model: mixtral8x22b(),
    hosts: [2],
    linkGbitPerSecond: [10],
    batches: [128],
    profiles: [
      { name: 'native', kDistribution: [0, 0, 1], source: 'test' },
      { name: 'skip', kDistribution: kDistributionFromAverage(1.42, 2), source: 'test' },
    ],
    gpu: H100_BF16,
    wireBytesPerValue: 2,
    wireEfficiency: { value: 1, source: 'test' },
    rttMs: { value: 0.05, source: 'test' },
  };

  it('one cell: 2 hosts, 10 Gbit/s, 128 tokens, native top-2', () => {
    const c = projectCell(inputs, 2, 10, 128, inputs.profiles[0]!);
    // 11/7 hosts x 6144 values x 2 bytes per token per layer.
    expect(c.bytesPerTokenLayer).toBeCloseTo((11 / 7) * 12_288, 9);
    // One way: 128 x 19,309.71 B x 8 / 1e10 = 1.977315 ms per layer, twice, 56 layers.
    expect(c.networkMs).toBeCloseTo(56 * 2 * 1.977_314_742_857, 6);
    // 32 tokens per expert: weight-bound, 603,979,776 B / (3.35 TB/s x 0.7) = 0.257561 ms, 4 experts per host.
    expect(c.expertMs).toBeCloseTo(56 * 4 * 0.257_560_672_068, 6);
    // Dense: 88,141,824 x 2 B / 2.345e12 B/s = 0.0751743 ms (above 128 tokens' 0.0380 ms of FLOPs).
    expect(c.denseMs).toBeCloseTo(56 * 0.075_174_263_539, 6);
    // 56 x (0.0751743 + 2 x 1.9773147 + 0.05 + 1.0302427) ms.
    expect(c.stepMsSerial).toBeCloseTo(286.162_600_501, 5);
    // 56 x (max(0.0751743 + 1.0302427, 1.9773147) + 0.05) ms: the link is the bound.
    expect(c.stepMsOverlap).toBeCloseTo(113.529_625_6, 5);
  });

  it('adaptive K (avg 1.42) saves 16.3% of the serial step there, nothing of its expert time', () => {
    const rows = project(inputs);
    expect(rows.map((r) => r.profile)).toEqual(['native', 'skip']);
    const skip = rows[1]!;
    // 0.58 x 1 + 0.42 x 11/7 = 1.24 hosts per token.
    expect(skip.hostsPerToken).toBeCloseTo(1.24, 12);
    expect(skip.stepMsSerial).toBeCloseTo(239.454_831_157, 5);
    expect(skip.savingSerial).toBeCloseTo(0.163_221_082_22, 8);
    // Every expert still gets tokens at 128 tokens per step and reads all its weights.
    expect(skip.expertMs).toBeCloseTo(rows[0]!.expertMs, 6);
    expect(rows[0]!.savingSerial).toBe(0);
  });

  it('the busiest host at one token per step: both experts on one host doubles its time', () => {
    const t = 0.257_560_672_068e-3; // one 8x22B expert reading its bf16 weights (as above)
    const one = { ...inputs, batches: [1] };
    // K = 2 on 2 hosts: same host with probability 3/7 (2t), else t on each: 10/7 t on average.
    expect(busiestHostSeconds(one, 2, 1, [0, 0, 1]) / t).toBeCloseTo(10 / 7, 1);
    // 8 hosts: never the same host.
    expect(busiestHostSeconds(one, 8, 1, [0, 0, 1]) / t).toBeCloseTo(1, 9);
    // avg K 1.42: 0.58 t + 0.42 x 10/7 t = 1.18 t on 2 hosts.
    expect(busiestHostSeconds(one, 2, 1, kDistributionFromAverage(1.42, 2)) / t).toBeCloseTo(1.18, 1);
    // Sampled with a fixed seed: the same figure every run.
    expect(busiestHostSeconds(one, 2, 1, [0, 0, 1])).toBe(busiestHostSeconds(one, 2, 1, [0, 0, 1]));
  });

  it('measured expert time: linear between points, proportional beyond the last, the first below it', () => {
    const measured = {
      ...inputs,
      expertTime: {
        source: 'test',
        points: [
          { batch: 8, seconds: 0.004 },
          { batch: 1, seconds: 0.002 },
        ],
      },
    };
    expect(expertSeconds(measured, 0)).toBe(0);
    expect(expertSeconds(measured, 0.5)).toBe(0.002);
    // 1 -> 2 ms, 8 -> 4 ms: 4.5 tokens is halfway, 3 ms.
    expect(expertSeconds(measured, 4.5)).toBeCloseTo(0.003, 12);
    expect(expertSeconds(measured, 16)).toBeCloseTo(0.008, 12);
  });

  it('refuses host counts that do not divide the experts and bad K distributions', () => {
    expect(() => projectCell(inputs, 3, 10, 1, inputs.profiles[0]!)).toThrow(/do not divide/);
    expect(() =>
      project({ ...inputs, profiles: [{ name: 'bad', kDistribution: [0, 0.5, 0.4], source: 't' }] }),
    ).toThrow(/summing to 1/);
  });
});

describe('kmoe bench project', () => {
  it('writes the table and the JSON with every assumption beside the numbers', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kmoe-project-'));
    try {
      const out = path.join(dir, 'projection.json');
      const r = await runCli([
        'bench',
        'project',
        '--hosts',
        '2,8',
        '--links',
        '10',
        '--batches',
        '128',
        '--expert-results',
        'assumed',
        '--network-results',
        'assumed',
        '--out',
        out,
      ]);
      expect(r.code, r.stderr).toBe(0);
      const json = JSON.parse(readFileSync(out, 'utf8')) as {
        assumptions: string[];
        rows: { hosts: number; profile: string; stepMsSerial: number; savingSerial: number }[];
      };
      // Native top-2 and the four calibrated profiles of bench-results/adaptive-k, for 2 host counts.
      expect(json.rows).toHaveLength(2 * 5);
      expect(json.rows[0]!.profile).toBe('native top-2');
      // Same inputs as the hand-computed cell above, but with the assumed TCP/Ethernet overhead.
      expect(json.rows[0]!.stepMsSerial).toBeGreaterThan(286.16);
      expect(json.assumptions.join('\n')).toMatch(/H100 SXM.*989 TFLOP\/s x 0\.6/);
      expect(json.assumptions.join('\n')).toMatch(/1538 wire bytes per 1448 payload bytes/);
      const md = readFileSync(path.join(dir, 'projection.md'), 'utf8');
      expect(md).toMatch(/\| hosts \| link Gbit\/s \|/);
      expect(md).toMatch(/- latency: 0\.05 ms per MoE layer/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('takes the expert time and the wire efficiency from bench results when they exist', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kmoe-project-'));
    try {
      const expert = path.join(dir, 'expert.json');
      const network = path.join(dir, 'network.json');
      const out = path.join(dir, 'projection.json');
      await fs.writeFile(
        expert,
        JSON.stringify({
          command: 'kmoe bench expert --device cuda',
          device: 'cuda',
          machine: { cpu: 'test cpu' },
          shape: { hidden: 6144, ffn: 16384 },
          points: [
            { format: 'fp32', batch: 1, seconds: 0.001 },
            { format: 'fp32', batch: 64, seconds: 0.002 },
          ],
        }),
      );
      await fs.writeFile(
        network,
        JSON.stringify({ command: 'kmoe bench network', wireEfficiency: 1.25, model: { hidden: 4096 } }),
      );
      const r = await runCli([
        'bench',
        'project',
        '--hosts',
        '8',
        '--links',
        '10',
        '--batches',
        '1',
        '--expert-results',
        expert,
        '--network-results',
        network,
        '--rtt-ms',
        '0',
        '--out',
        out,
      ]);
      expect(r.code, r.stderr).toBe(0);
      const json = JSON.parse(readFileSync(out, 'utf8')) as {
        assumptions: string[];
        rows: { profile: string; expertMs: number; bytesPerTokenLayer: number }[];
      };
      const native = json.rows[0]!;
      // 8 hosts, 1 token, K=2: two experts on two hosts at once, 1 ms each, 56 layers.
      expect(native.expertMs).toBeCloseTo(56, 9);
      // 2 hosts per token x 6144 x 2 bytes x 1.25.
      expect(native.bytesPerTokenLayer).toBeCloseTo(2 * 6144 * 2 * 1.25, 9);
      expect(json.assumptions.join('\n')).toMatch(/measured, .*expert\.json: fp32 on cuda/);
      expect(json.assumptions.join('\n')).toMatch(/= 1\.2500 \(measured at hidden 4096/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a results file that is not there instead of assuming', async () => {
    const r = await runCli(['bench', 'project', '--expert-results', '/nonexistent/expert.json']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--expert-results /nonexistent/expert.json: no such file');
  });

  it('refuses host counts that do not divide the experts', async () => {
    const r = await runCli(['bench', 'project', '--hosts', '3']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--hosts must be one of 1, 2, 4, 8, got '3'/);
  });
});
