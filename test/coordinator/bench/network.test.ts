// kmoe bench network: its parsers on fixed text, and one reduced run across real namespaces (real
// workers, kmoe serve and tc-limited links) asserting structure and bytes, never speed. The run
// needs root and `ip netns`; elsewhere it is skipped with deploy/netns/kmoe-netns.sh's own reason,
// and the CLI must refuse with that reason instead.

import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { expertRanges, netnsCheck, parseRttLines } from '../../../coordinator/bench/network.js';
import { interfaceBytes } from '../../../coordinator/bench/network-cell.js';
import { sumMetric } from '../../../coordinator/bench/prometheus-text.js';
import { runCli } from '../../helpers/cli.js';

const check = netnsCheck();
if (!check.ok) console.warn(`skipping the kmoe bench network run: ${check.reason}`);

describe('bench network parsers', () => {
  it('reads the RTT lines of kmoe-netns.sh (TCP probe and ping forms)', () => {
    const out =
      'hello\nrtt worker=0 method=tcp min_ms=0.056 median_ms=0.092 max_ms=0.235\n' +
      'rtt worker=1 method=icmp min_ms=0.041 avg_ms=0.052 max_ms=0.071\n';
    expect(parseRttLines(out)).toEqual([
      { worker: 0, method: 'tcp', minMs: 0.056, typicalMs: 0.092, maxMs: 0.235 },
      { worker: 1, method: 'icmp', minMs: 0.041, typicalMs: 0.052, maxMs: 0.071 },
    ]);
  });

  it('splits experts into contiguous ranges and refuses more workers than experts', () => {
    expect(expertRanges(8, 2)).toEqual(['0-3', '4-7']);
    expect(expertRanges(8, 3)).toEqual(['0-1', '2-4', '5-7']);
    expect(expertRanges(8, 8)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
    expect(() => expertRanges(8, 9)).toThrow(/--workers must be 1\.\.8/);
  });

  it('sums a metric over its label sets and reads interface bytes from /proc/net/dev', () => {
    const metrics = [
      '# HELP kmoe_dispatch_bytes_total x',
      'kmoe_dispatch_bytes_total{direction="out",worker="ws://a"} 100',
      'kmoe_dispatch_bytes_total{direction="in",worker="ws://a"} 50.5',
      'kmoe_dispatch_bytes_total_other 7',
      'kmoe_completion_tokens_total 12',
    ].join('\n');
    expect(sumMetric(metrics, 'kmoe_dispatch_bytes_total')).toBe(150.5);
    expect(sumMetric(metrics, 'kmoe_completion_tokens_total')).toBe(12);
    const dev = [
      'Inter-|   Receive                                                |  Transmit',
      ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
      '    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0',
      '  eth0:  123456     100    0    0    0     0          0         0    65432      90    0    0    0     0       0          0',
    ].join('\n');
    expect(interfaceBytes(dev, 'eth0')).toBe(123_456 + 65_432);
    expect(() => interfaceBytes(dev, 'eth1')).toThrow(/no interface eth1/);
  });
});

describe.skipIf(check.ok)('bench network where it cannot run', () => {
  it('refuses with the reason', async () => {
    const r = await runCli(['bench', 'network', '--model', 'models/tiny-mixtral']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/kmoe bench network cannot run on this host: .*cannot run/);
  });
});

describe.skipIf(!check.ok)('bench network across namespaces (reduced run)', () => {
  it('measures every (rate, streams, routing) cell; top-1 moves fewer bytes per token than top-2', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kmoe-bench-network-test-'));
    try {
      const out = path.join(dir, 'network.json');
      const r = await runCli(
        [
          'bench',
          'network',
          '--model',
          'models/tiny-mixtral',
          '--rates',
          '100mbit,unlimited',
          '--routing',
          'topk:2,topk:1',
          '--streams',
          '1,2',
          '--workers',
          '2',
          '--requests',
          '2',
          '--max-tokens',
          '4',
          '--prompt-chars',
          '60',
          '--repeats',
          '1',
          '--threads',
          '1',
          '--out',
          out,
          '--chart',
          path.join(dir, 'network.svg'),
        ],
        { timeoutMs: 250_000 },
      );
      expect(r.code, r.stderr).toBe(0);
      const report = JSON.parse(readFileSync(out, 'utf8')) as {
        routings: string[];
        rtt: { rate: string; workers: { worker: number; minMs: number }[] }[];
        rows: {
          rate: string;
          routing: string;
          streams: number;
          errors: string[];
          completionTokens: number;
          avgK: number;
          dispatchBytesPerOutputToken: number;
          linkBytesPerOutputToken: number;
          wireEfficiency: number;
        }[];
        ratios: { rate: string; streams: number; linkBytesVsBaseline: number }[];
      };
      expect(report.routings).toEqual(['topk:2', 'topk:1']);
      const cells = report.rows.map((x) => `${x.rate}/${x.streams}/${x.routing}`).sort();
      expect(cells).toEqual(
        ['100mbit', 'unlimited']
          .flatMap((rate) => [1, 2].flatMap((s) => ['topk:1', 'topk:2'].map((k) => `${rate}/${s}/${k}`)))
          .sort(),
      );
      for (const row of report.rows) {
        expect(row.errors).toEqual([]);
        // ignore_eos: every request generates exactly --max-tokens.
        expect(row.completionTokens).toBe(2 * 4);
        expect(row.avgK).toBeCloseTo(row.routing === 'topk:1' ? 1 : 2, 9);
        expect(row.dispatchBytesPerOutputToken).toBeGreaterThan(0);
        // Link bytes carry the payload plus TCP/IP/Ethernet headers: more than the payload.
        expect(row.wireEfficiency).toBeGreaterThan(1);
      }
      for (const ratio of report.ratios) expect(ratio.linkBytesVsBaseline).toBeLessThan(1);
      expect(report.ratios).toHaveLength(4);
      for (const rate of report.rtt) {
        expect(rate.workers.map((w) => w.worker)).toEqual([0, 1]);
        for (const w of rate.workers) expect(w.minMs).toBeGreaterThan(0);
      }
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
