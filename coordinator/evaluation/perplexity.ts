// The standard perplexity procedure over a token-id corpus: non-overlapping windows of `windowLen`
// ids (trailing partial window dropped), no BOS, positions 1..L-1 of each window scored given the
// earlier tokens of the same window; PPL = exp(mean NLL). Routing statistics come from the same
// forward passes, so every reported saving was applied, not estimated.

import { RoutingStats, type RoutingStatsJSON } from '../../shared/routing/stats.js';
import type { EngineClient } from '../engine/engine-client.js';
import type { RoutingTraceLayer } from '../moe/observers/routing-trace.js';
import { STANDARD_WINDOW, windowCount } from './windows.js';

export interface PerplexityOptions {
  readonly windowLen?: number;
  /** Windows per engine call: larger batches give larger expert GEMMs (4 is fastest here). */
  readonly batchWindows?: number;
  readonly routing?: string;
  /** Window index range [start, end) of the corpus; default all whole windows. */
  readonly windows?: { readonly start: number; readonly end: number };
  readonly onProgress?: (windowsDone: number, windowsTotal: number, runningPpl: number) => void;
  /**
   * Given: every batch's routing decisions (per MoE layer, rows = its windows end to end), in window
   * order, awaited before the next batch is merged (kmoe eval --trace).
   */
  readonly onTrace?: (layers: RoutingTraceLayer[], windows: number) => Promise<void>;
}

export interface PerplexityReport {
  readonly perplexity: number;
  readonly meanNll: number;
  /** Scored token positions. */
  readonly tokens: number;
  readonly windows: number;
  readonly windowLen: number;
  readonly routing: string;
  readonly avgK: number;
  readonly avgKPerLayer: number[];
  /** kHistogram[i] = token-layer pairs that ran K = i + 1 experts. */
  readonly kHistogram: number[];
  /** Token-layer pairs that ran no expert (K = 0). */
  readonly zeroK: number;
  readonly activations: number;
  readonly nativeActivations: number;
  /** 1 - activations / nativeActivations (native top-K of the model, not k_max). */
  readonly savingVsNative: number;
  readonly meanEntropyPerLayer: number[];
  readonly seconds: number;
  readonly tokensPerSecond: number;
  readonly stats: RoutingStatsJSON;
}

export async function evaluatePerplexity(
  engine: EngineClient,
  ids: Uint16Array,
  options: PerplexityOptions = {},
): Promise<PerplexityReport> {
  const L = options.windowLen ?? STANDARD_WINDOW;
  const batch = options.batchWindows ?? 4;
  const total = windowCount(ids, L);
  const range = options.windows ?? { start: 0, end: total };
  if (range.start < 0 || range.end > total || range.start >= range.end) {
    throw new RangeError(
      `window range ${range.start}:${range.end} is outside the ${total} windows of the corpus`,
    );
  }
  const routing = options.routing ?? engine.info.defaultRouting;
  const count = range.end - range.start;
  const stats = new RoutingStats(engine.info.routing);
  let nllSum = 0;
  let scored = 0;
  let done = 0;
  const started = performance.now();

  // Two calls in flight: the engine thread starts the next batch while this thread merges the last.
  const batches: [number, number][] = [];
  for (let w = range.start; w < range.end; w += batch) batches.push([w, Math.min(range.end, w + batch)]);
  const trace = options.onTrace;
  const submit = (b: [number, number]) =>
    engine.score(ids.slice(b[0] * L, b[1] * L), L, routing, trace !== undefined);
  const inflight = batches.slice(0, 2).map(submit);
  for (let i = 0; i < batches.length; i++) {
    const r = await inflight[i]!;
    if (i + 2 < batches.length) inflight.push(submit(batches[i + 2]!));
    nllSum += r.nllSum;
    scored += r.scored;
    stats.merge(RoutingStats.fromJSON(r.stats));
    const n = batches[i]![1] - batches[i]![0];
    if (trace) {
      if (!r.trace) throw new Error('engine returned no routing trace');
      await trace(r.trace, n);
    }
    done += n;
    options.onProgress?.(done, count, Math.exp(nllSum / scored));
  }
  const seconds = (performance.now() - started) / 1000;
  const json = stats.toJSON();
  const kHistogram = new Array<number>(engine.info.numExperts).fill(0);
  let zeroK = 0;
  for (const layer of json.layers) {
    zeroK += layer.zeroK ?? 0;
    layer.kHistogram.forEach((n, k) => {
      kHistogram[k]! += n;
    });
  }
  return {
    perplexity: Math.exp(nllSum / scored),
    meanNll: nllSum / scored,
    tokens: scored,
    windows: count,
    windowLen: L,
    routing,
    avgK: stats.avgK(),
    avgKPerLayer: stats.avgKPerLayer(),
    kHistogram,
    zeroK,
    activations: stats.activations(),
    nativeActivations: stats.nativeActivations(),
    savingVsNative: stats.saving(),
    meanEntropyPerLayer: stats.meanEntropyPerLayer(),
    seconds,
    tokensPerSecond: (count * L) / seconds,
    stats: json,
  };
}
