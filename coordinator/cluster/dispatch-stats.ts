// Network accounting of expert dispatch, per MoE layer and per worker: messages, bytes each way,
// token-expert pairs and distinct tokens sent. Alongside what was sent, the same batch is costed
// without same-worker dedup and under the model's native top-K (same router probabilities, same
// placement rule), so every run reports "bytes vs native top-K" from one set of decisions.

import { DISPATCH_LATENCY_BUCKETS_SECONDS } from '../../shared/protocol/messages.js';
import type { WireDType } from '../../shared/protocol/wire-dtype.js';

export interface WorkerLayerCounters {
  messages: number;
  bytesOut: number;
  bytesIn: number;
  pairs: number;
  tokensSent: number;
}

/** A way of sending the same batch that was costed, not run. */
export interface VariantCounters {
  messages: number;
  /** Both directions. */
  bytes: number;
  pairs: number;
  tokensSent: number;
}

export interface DispatchLayerJSON {
  /** Token rows that went through this MoE layer. */
  tokens: number;
  /** What was sent, per worker (measured frame sizes). */
  workers: WorkerLayerCounters[];
  /**
   * What was sent to workers dropped from `workers` since the period started (they left the
   * membership and the coordinator pruned their slots): kept so that totals never go down.
   */
  departed: WorkerLayerCounters;
  /** The same decisions with one hidden state per (token, expert) pair, even on a shared worker. */
  noDedup: VariantCounters;
  /** The model's native top-K on the same router probabilities, with dedup. */
  native: VariantCounters;
  /** Native top-K without dedup: what a per-pair all-to-all moves. */
  nativeNoDedup: VariantCounters;
  /** Batches dispatched, and the sum of their max / mean expected cost per live worker. */
  batches: number;
  imbalanceSum: number;
  /** Pairs re-sent to a replica after their worker failed, disconnected or stalled. */
  retriedPairs: number;
}

/**
 * Round trips of requests to one worker: from handing a request to the socket to its reply being
 * decoded, so queueing on both ends and the compute included.
 */
export interface RoundTripJSON {
  /**
   * counts[i]: round trips in (bounds[i-1], bounds[i]] of DISPATCH_LATENCY_BUCKETS_SECONDS; one
   * more entry for those above the last bound.
   */
  counts: number[];
  sumSeconds: number;
}

export interface DispatchStatsJSON {
  wire: WireDType;
  nativeK: number;
  hidden: number;
  workers: { url: string; experts: string }[];
  layers: DispatchLayerJSON[];
  /** Per worker, completed request round trips (all layers). */
  roundTrips: RoundTripJSON[];
}

export interface DispatchSummary {
  wire: WireDType;
  workers: number;
  /** Token rows summed over layers: the denominator of every per-token-per-layer figure. */
  tokenLayers: number;
  messages: number;
  bytes: number;
  /** Bytes (both directions) per token per MoE layer, as sent. */
  bytesPerTokenLayer: number;
  noDedupBytesPerTokenLayer: number;
  nativeBytesPerTokenLayer: number;
  nativeNoDedupBytesPerTokenLayer: number;
  /** bytes / native bytes (both with dedup). */
  vsNative: number;
  /** Mean over batches of max / mean expected cost per live worker (1 = perfectly even). */
  imbalance: number;
  retriedPairs: number;
  /** 1 - bytes / no-dedup bytes: what sending a shared token once saved. */
  dedupSaving: number;
  /** Token-expert pairs computed remotely, and under native top-K. */
  pairs: number;
  nativePairs: number;
  /** Hidden states sent (a token counts once per worker it went to). */
  tokensSent: number;
  nativeTokensSent: number;
  perLayer: { tokens: number; bytesPerToken: number; nativeBytesPerToken: number }[];
  perWorker: ({ url: string; experts: string; meanRoundTripMs: number } & WorkerLayerCounters)[];
}

const zeroVariant = (): VariantCounters => ({ messages: 0, bytes: 0, pairs: 0, tokensSent: 0 });
const zeroRoundTrips = (): RoundTripJSON => ({
  counts: new Array<number>(DISPATCH_LATENCY_BUCKETS_SECONDS.length + 1).fill(0),
  sumSeconds: 0,
});
const zeroWorker = (): WorkerLayerCounters => ({
  messages: 0,
  bytesOut: 0,
  bytesIn: 0,
  pairs: 0,
  tokensSent: 0,
});

function addCounters(to: WorkerLayerCounters, c: WorkerLayerCounters): void {
  to.messages += c.messages;
  to.bytesOut += c.bytesOut;
  to.bytesIn += c.bytesIn;
  to.pairs += c.pairs;
  to.tokensSent += c.tokensSent;
}

/** A worker as the stats know it: `id` is the backend's slot id (never reused). */
export interface StatsWorker {
  readonly id: number;
  readonly url: string;
  readonly experts: string;
}

export class DispatchStats {
  private readonly layers: DispatchLayerJSON[];
  private readonly roundTrips: RoundTripJSON[];
  private readonly info: Omit<DispatchStatsJSON, 'layers' | 'roundTrips'> & {
    workers: { url: string; experts: string }[];
  };
  /** Slot id of each entry of `info.workers`. */
  private readonly ids: number[];

  /** A worker's `id` defaults to its index in `info.workers`. */
  constructor(
    info: Omit<DispatchStatsJSON, 'layers' | 'roundTrips' | 'workers'> & {
      workers: readonly (Omit<StatsWorker, 'id'> & { readonly id?: number })[];
    },
    numLayers: number,
  ) {
    this.info = { ...info, workers: info.workers.map(({ url, experts }) => ({ url, experts })) };
    this.ids = info.workers.map((w, i) => w.id ?? i);
    this.roundTrips = info.workers.map(zeroRoundTrips);
    this.layers = Array.from({ length: numLayers }, () => ({
      tokens: 0,
      workers: info.workers.map(zeroWorker),
      departed: zeroWorker(),
      noDedup: zeroVariant(),
      native: zeroVariant(),
      nativeNoDedup: zeroVariant(),
      batches: 0,
      imbalanceSum: 0,
      retriedPairs: 0,
    }));
  }

  /** The slot ids of the workers counted one by one. */
  get workerIds(): readonly number[] {
    return this.ids;
  }

  /** A worker that joined during the period. */
  addWorker(w: StatsWorker): void {
    this.ids.push(w.id);
    this.info.workers.push({ url: w.url, experts: w.experts });
    this.roundTrips.push(zeroRoundTrips());
    for (const l of this.layers) l.workers.push(zeroWorker());
  }

  /** A worker whose slot was pruned: its counters move to `departed` (its round trips go). */
  removeWorker(id: number): void {
    const i = this.ids.indexOf(id);
    if (i < 0) return;
    this.ids.splice(i, 1);
    this.info.workers.splice(i, 1);
    this.roundTrips.splice(i, 1);
    for (const l of this.layers) addCounters(l.departed, l.workers.splice(i, 1)[0]!);
  }

  /** One batch's balance (max / mean cost per live worker) and pairs re-sent after failures. */
  recordBalance(layer: number, imbalance: number, retriedPairs: number): void {
    const l = this.layerOf(layer);
    l.batches++;
    l.imbalanceSum += imbalance;
    l.retriedPairs += retriedPairs;
  }

  /**
   * One message to worker slot `id` and its reply, which took `seconds` to come back; to `departed`
   * if that worker is no longer counted one by one.
   */
  recordMessage(
    layer: number,
    id: number,
    m: Omit<WorkerLayerCounters, 'messages'> & { seconds: number },
  ): void {
    const l = this.layerOf(layer);
    const i = this.ids.indexOf(id);
    const rt = this.roundTrips[i];
    if (rt) {
      rt.counts[binOf(m.seconds)]!++;
      rt.sumSeconds += m.seconds;
    }
    addCounters(l.workers[i] ?? l.departed, { messages: 1, ...m });
  }

  /** The layer's token count and the costed variants of the same batch. */
  recordLayer(
    layer: number,
    tokens: number,
    variants: { noDedup: VariantCounters; native: VariantCounters; nativeNoDedup: VariantCounters },
  ): void {
    const l = this.layerOf(layer);
    l.tokens += tokens;
    for (const key of ['noDedup', 'native', 'nativeNoDedup'] as const) {
      const v = variants[key];
      l[key].messages += v.messages;
      l[key].bytes += v.bytes;
      l[key].pairs += v.pairs;
      l[key].tokensSent += v.tokensSent;
    }
  }

  toJSON(): DispatchStatsJSON {
    return structuredClone({ ...this.info, layers: this.layers, roundTrips: this.roundTrips });
  }

  private layerOf(layer: number): DispatchLayerJSON {
    const l = this.layers[layer];
    if (!l) throw new RangeError(`dispatch stats: layer ${layer} out of range`);
    return l;
  }
}

export function summarizeDispatch(s: DispatchStatsJSON): DispatchSummary {
  const sum = (f: (l: DispatchLayerJSON) => number) => s.layers.reduce((a, l) => a + f(l), 0);
  /** Over every worker, departed ones included. */
  const all = (l: DispatchLayerJSON, f: (w: WorkerLayerCounters) => number) =>
    l.workers.reduce((a, w) => a + f(w), f(l.departed));
  const sent = (l: DispatchLayerJSON) => all(l, (w) => w.bytesOut + w.bytesIn);
  const tokenLayers = sum((l) => l.tokens);
  const per = (bytes: number) => (tokenLayers === 0 ? 0 : bytes / tokenLayers);
  const bytes = sum(sent);
  const noDedup = sum((l) => l.noDedup.bytes);
  const native = sum((l) => l.native.bytes);
  return {
    wire: s.wire,
    workers: s.workers.length,
    tokenLayers,
    messages: sum((l) => all(l, (w) => w.messages)),
    bytes,
    bytesPerTokenLayer: per(bytes),
    noDedupBytesPerTokenLayer: per(noDedup),
    nativeBytesPerTokenLayer: per(native),
    nativeNoDedupBytesPerTokenLayer: per(sum((l) => l.nativeNoDedup.bytes)),
    vsNative: native === 0 ? 0 : bytes / native,
    imbalance: sum((l) => l.batches) === 0 ? 1 : sum((l) => l.imbalanceSum) / sum((l) => l.batches),
    retriedPairs: sum((l) => l.retriedPairs),
    dedupSaving: noDedup === 0 ? 0 : 1 - bytes / noDedup,
    pairs: sum((l) => all(l, (w) => w.pairs)),
    nativePairs: sum((l) => l.native.pairs),
    tokensSent: sum((l) => all(l, (w) => w.tokensSent)),
    nativeTokensSent: sum((l) => l.native.tokensSent),
    perLayer: s.layers.map((l) => ({
      tokens: l.tokens,
      bytesPerToken: l.tokens === 0 ? 0 : sent(l) / l.tokens,
      nativeBytesPerToken: l.tokens === 0 ? 0 : l.native.bytes / l.tokens,
    })),
    perWorker: s.workers.map((w, i) => {
      const c = zeroWorker();
      for (const l of s.layers) addCounters(c, l.workers[i]!);
      const rt = s.roundTrips[i]!;
      const trips = rt.counts.reduce((a, n) => a + n, 0);
      return { ...w, ...c, meanRoundTripMs: trips === 0 ? 0 : (1000 * rt.sumSeconds) / trips };
    }),
  };
}

/** Index of the round-trip bin holding `seconds` (the extra last bin takes anything above). */
function binOf(seconds: number): number {
  const i = DISPATCH_LATENCY_BUCKETS_SECONDS.findIndex((le) => seconds <= le);
  return i === -1 ? DISPATCH_LATENCY_BUCKETS_SECONDS.length : i;
}
