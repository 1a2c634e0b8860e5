// The routing frontier of a corpus: fixed K = 1 and K = native, then sweeps of every policy family,
// each point a real reduced-K evaluation (drawn by coordinator/bench/report/sweep-chart.ts).

import type { EngineClient } from '../engine/engine-client.js';
import { evaluatePerplexity, type PerplexityReport } from './perplexity.js';

export interface SweepSeries {
  readonly name: string;
  readonly routings: readonly string[];
}

/** Spec families swept by default (native K = 2 models): each ordered from most to fewest experts. */
export function defaultSweep(nativeK: number): SweepSeries[] {
  return [
    { name: 'fixed K', routings: [`topk:${nativeK}`, 'topk:1'] },
    { name: 'entropy', routings: [0.4, 0.7, 1.0, 1.2, 1.4, 1.6].map((t) => `entropy:1,${nativeK}@${t}`) },
    { name: 'top-p', routings: [0.95, 0.9, 0.8, 0.7, 0.6, 0.5].map((p) => `topp:${p}@1-${nativeK}`) },
    { name: 'ratio', routings: [0.1, 0.2, 0.3, 0.4, 0.5, 0.7].map((b) => `ratio:${b}`) },
    { name: 'skip', routings: [0.1, 0.15, 0.2, 0.25, 0.3, 0.35].map((t) => `skip:${t}`) },
  ];
}

export interface SweepPoint {
  readonly series: string;
  readonly routing: string;
  readonly perplexity: number;
  readonly avgK: number;
  readonly savingVsNative: number;
  /** Relative to the native top-K perplexity of the same corpus. */
  readonly pplIncrease: number;
}

export async function runSweep(
  engine: EngineClient,
  ids: Uint16Array,
  series: readonly SweepSeries[],
  onPoint: (done: number, total: number, point: SweepPoint) => void,
): Promise<{ native: PerplexityReport; points: SweepPoint[] }> {
  const total = series.reduce((n, s) => n + s.routings.length, 0);
  const native = await evaluatePerplexity(engine, ids, { routing: `topk:${engine.info.nativeK}` });
  const points: SweepPoint[] = [];
  for (const s of series) {
    for (const routing of s.routings) {
      const r = await evaluatePerplexity(engine, ids, { routing });
      const point: SweepPoint = {
        series: s.name,
        routing: r.routing,
        perplexity: r.perplexity,
        avgK: r.avgK,
        savingVsNative: r.savingVsNative,
        pplIncrease: r.perplexity / native.perplexity - 1,
      };
      points.push(point);
      onPoint(points.length, total, point);
    }
  }
  return { native, points };
}
