// `kmoe calibrate` and `kmoe eval --sweep` on a non-Mixtral family: tiny DeepSeek-V3 (sigmoid gate
// with a selection bias, groups, routed scaling, a dense first layer, native K 4). Small windows:
// random weights, so only the machinery is checked (profiles per MoE layer, K bounds, verified
// avgK), not quality.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadRoutingProfile } from '../../../shared/routing/profile.js';
import { lastJsonLine, runCli } from '../../helpers/cli.js';
import { ROOT } from '../../helpers/paths.js';

const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-families-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MODEL = path.join(ROOT, 'models/tiny-deepseek-v3');
const DATA = ['--ids', 'data/eval/valid.code.u16', '--windows', '0:4', '--threads', '1'];

describe('tiny-deepseek-v3 through the CLI', () => {
  it('calibrate (percentile, entropy): one threshold list per MoE layer, K in {1, 4}, eval reproduces avgK', async () => {
    const out = path.join(dir, 'entropy.json');
    const r = await runCli([
      'calibrate',
      '--model',
      MODEL,
      '--method',
      'percentile',
      '--policy',
      'entropy',
      '--target-avg-k',
      '2.5',
      ...DATA,
      '--out',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const profile = loadRoutingProfile(out);
    // 3 decoder layers, layer 0 dense: 2 MoE layers.
    expect(profile.model).toMatchObject({ numLayers: 2, numExperts: 16, nativeK: 4 });
    expect(profile.policy).toMatchObject({ kind: 'entropy', kValues: [1, 4] });
    const thresholds = (profile.policy as { thresholds: number[][] }).thresholds;
    expect(thresholds).toHaveLength(2);
    // Entropy is K in {1, 4}: skip rate (4 - 2.5) / 3 = 0.5 per layer. The thresholds come from
    // native-routing signals, so the first MoE layer hits the target to quantile steps; the second
    // sees inputs changed by the first one's skipping, and sigmoid entropies of random weights are
    // packed just below ln 16, so that shift moves many of its tokens across the threshold.
    expect(profile.provenance!['skipRates']).toEqual([0.5, 0.5]);
    const perLayer = profile.provenance!['avgKPerLayer'] as number[];
    expect(Math.abs(perLayer[0]! - 2.5)).toBeLessThan(0.02);
    const avgK = profile.provenance!.avgK!;
    expect(Math.abs(avgK - 2.5)).toBeLessThan(0.25);
    const ev = await runCli(['eval', '--model', MODEL, ...DATA, '--routing', out, '--json']);
    expect(ev.code, ev.stderr).toBe(0);
    expect(lastJsonLine(ev.stdout)['avgK']).toBeCloseTo(avgK, 6);
  });

  it('refuses a target average K above the native K', async () => {
    const r = await runCli([
      'calibrate',
      '--model',
      MODEL,
      '--method',
      'percentile',
      '--policy',
      'ratio',
      '--target-avg-k',
      '4.5',
      ...DATA,
      '--out',
      path.join(dir, 'never.json'),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/above the model's native K of 4/);
  });

  it('eval --sweep: fixed K 1 and 4 and every policy series', async () => {
    const chart = path.join(dir, 'pareto.svg');
    const r = await runCli(['eval', '--model', MODEL, ...DATA, '--sweep', '--chart', chart]);
    expect(r.code, r.stderr).toBe(0);
    const data = JSON.parse(readFileSync(chart.replace(/\.svg$/, '.json'), 'utf8')) as {
      points: { series: string; routing: string; avgK: number; savingVsNative: number }[];
    };
    expect(new Set(data.points.map((p) => p.series))).toEqual(
      new Set(['fixed K', 'entropy', 'top-p', 'ratio', 'skip']),
    );
    const fixed = data.points.filter((p) => p.series === 'fixed K');
    expect(fixed.map((p) => [p.routing, p.avgK])).toEqual([
      ['topk:4', 4],
      ['topk:1', 1],
    ]);
    expect(fixed[1]!.savingVsNative).toBeCloseTo(0.75, 9);
    for (const p of data.points) expect(p.avgK).toBeGreaterThanOrEqual(1);
    for (const p of data.points) expect(p.avgK).toBeLessThanOrEqual(4);
  });
});
