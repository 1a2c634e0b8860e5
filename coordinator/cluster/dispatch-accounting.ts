// Dispatch accounting as an observer of the MoE seam: records what the remote transport reported
// for each layer (messages, bytes, round trips) and costs the same layer, unsent, without
// same-worker dedup and under the model's native top-K on the same router probabilities, with the
// same placement, placement rule, request ids and live workers, and records the balance of each batch
// (max / mean expected cost per live worker) and the pairs re-sent after a worker failed. The
// transport itself never accounts. A costed variant's pairs on experts without a live worker (native
// top-K while experts are lost) could not be sent, so they cost nothing.
//
// Costing a layer (routing it natively, planning three variants, sizing their frames) is off the
// critical path: observe() only queues the layer, and the queue is costed while the workers compute
// the next layer (the backend's onRequestsSent), or when the statistics are read. At one stream a
// token waits for every layer in series, and costing there took 36-48 us per layer.

import type { ExpertAssignment } from '../../shared/moe/expert-assignment.js';
import { formatExpertSet } from '../../shared/protocol/expert-set.js';
import type { RoutingModel, RoutingPolicy } from '../../shared/routing/policy.js';
import { createRoutingPolicy } from '../../shared/routing/registry.js';
import type { MoeLayerEvent, MoeObserver } from '../moe/observer.js';
import { imbalance } from './balance.js';
import { planDispatch, shareSizes, type WorkerShare } from './dispatch-plan.js';
import {
  DispatchStats,
  type DispatchStatsJSON,
  type StatsWorker,
  type VariantCounters,
} from './dispatch-stats.js';
import { PlacementError } from './errors.js';
import {
  type ClusterView,
  MAX_REQUEST_ID,
  type RemoteExpertBackend,
  type RemoteModel,
  type RemoteTransfer,
} from './remote-expert-backend.js';

/**
 * A layer observed and not costed yet: what costing reads. Router scores are copied (the next layer
 * reuses their buffer); of the decision only its pairs are kept (not a policy's prior, which can be
 * megabytes).
 */
interface QueuedLayer {
  readonly layer: number;
  readonly moeLayer: number;
  readonly sent: ExpertAssignment;
  readonly probs: Float32Array;
  readonly select: Float32Array | undefined;
  readonly transfer: RemoteTransfer;
}

/** Costing a queued layer failed: a bug in the accounting, reported when the statistics are read. */
export class AccountingError extends Error {
  constructor(moeLayer: number, cause: unknown) {
    super(`dispatch accounting failed on MoE layer ${moeLayer}: ${(cause as Error).message ?? cause}`, {
      cause,
    });
    this.name = 'AccountingError';
  }
}

export class DispatchAccounting implements MoeObserver<RemoteTransfer> {
  private stats: DispatchStats;
  private readonly native: RoutingPolicy;
  /**
   * Layers sent and not costed yet. Each is costed when the next layer's requests are out, so this
   * holds at most a layer per forward pass in flight (two with two-batch overlap).
   */
  private queued: QueuedLayer[] = [];
  /** The first costing failure since the last read. */
  private failure: AccountingError | undefined;

  /** `routing` describes the MoE layers (statistics are indexed by MoE layer) and the native rule. */
  constructor(
    private readonly backend: RemoteExpertBackend,
    private readonly model: RemoteModel,
    private readonly routing: RoutingModel,
  ) {
    this.native = createRoutingPolicy({ kind: 'topk', k: routing.nativeK }, routing);
    this.stats = this.fresh();
    backend.onRequestsSent(() => this.costQueued());
  }

  observe(e: MoeLayerEvent<RemoteTransfer>): void {
    const transfer = e.transfer;
    if (!transfer) return;
    const { numTokens, offsets, experts, weights } = e.decision;
    this.queued.push({
      layer: e.layer,
      moeLayer: e.moeLayer,
      sent: { numTokens, offsets, experts, weights },
      probs: e.probs.slice(),
      select: e.select?.slice(),
      transfer,
    });
  }

  /**
   * Costs the queued layers, oldest first. Never throws: it runs inside another layer's dispatch,
   * which a failure here must not fail; the failure is reported by the next dispatchStats().
   */
  private costQueued(): void {
    const layers = this.queued;
    if (layers.length === 0) return;
    this.queued = [];
    for (const q of layers) {
      try {
        this.costLayer(q);
      } catch (err) {
        this.failure ??= new AccountingError(q.moeLayer, err);
      }
    }
  }

  private costLayer(q: QueuedLayer): void {
    const t = q.transfer;
    this.followSlots();
    for (const m of t.messages) {
      this.stats.recordMessage(q.moeLayer, m.slot, {
        bytesOut: m.bytesOut,
        bytesIn: m.bytesIn,
        pairs: m.pairs,
        tokensSent: m.tokens.length,
        seconds: m.seconds,
      });
    }
    const native = this.native.route({
      layer: q.moeLayer,
      numTokens: q.sent.numTokens,
      numExperts: this.model.numExperts,
      probs: q.probs,
      ...(q.select ? { select: q.select } : {}),
    });
    const cost = (a: ExpertAssignment, dedup: boolean) => this.cost(q.layer, t, a, dedup);
    this.stats.recordLayer(q.moeLayer, q.sent.numTokens, {
      noDedup: cost(q.sent, false),
      native: cost(native, true),
      nativeNoDedup: cost(native, false),
    });
    this.stats.recordBalance(q.moeLayer, imbalance(t.costs, t.live), t.retriedPairs);
  }

  /** Accounting so far; `reset` starts a new period. */
  dispatchStats(reset: boolean): DispatchStatsJSON {
    this.costQueued();
    this.followSlots();
    const failure = this.failure;
    if (failure) {
      this.failure = undefined;
      throw failure;
    }
    const json = this.stats.toJSON();
    if (reset) this.stats = this.fresh();
    return json;
  }

  /** The layer sent as `a` (not sent, costed): frame sizes the protocol would produce. */
  private cost(layer: number, t: RemoteTransfer, variant: ExpertAssignment, dedup: boolean): VariantCounters {
    const W = t.placement.workers.length;
    let a = variant;
    let pairWorker: Int32Array;
    try {
      pairWorker = this.backend.assignFor(a, t.placement, t.live, t.model);
    } catch (err) {
      // The error names every expert of `a` without a live holder, so one retry places the rest.
      if (!(err instanceof PlacementError) || err.missing.length === 0) throw err;
      a = withoutExperts(a, err.missing);
      pairWorker = this.backend.assignFor(a, t.placement, t.live, t.model);
    }
    const sizes = shareSizes(a, pairWorker, W);
    const v: VariantCounters = { messages: 0, bytes: 0, pairs: 0, tokensSent: 0 };
    const add = (id: number, rows: number, pairs: number) => {
      v.messages++;
      v.pairs += pairs;
      v.tokensSent += rows;
      v.bytes += this.backend.messageBytes(layer, id, rows, pairs);
    };
    let shares: WorkerShare[] | undefined;
    let nextId = t.firstId + W;
    for (let w = 0; w < W; w++) {
      const m = sizes.pairs[w]!;
      if (m === 0) continue;
      const n = dedup ? sizes.tokens[w]! : m;
      const limit = t.frameLimits[w] ?? Number.POSITIVE_INFINITY;
      if (this.backend.requestFits(layer, n, m, limit)) {
        add(t.firstId + w, n, m);
        continue;
      }
      // More than one frame holds: cut as the backend cuts a share it sends (ids as it numbers them).
      let rows: Int32Array;
      if (dedup) {
        shares ??= planDispatch(a, pairWorker, W);
        rows = shares.find((s) => s.worker === w)!.offsets;
      } else rows = Int32Array.from({ length: m + 1 }, (_, i) => i);
      const pieces = this.backend.requestSizes(layer, rows, limit);
      pieces.forEach(([r, p], i) => {
        // A variant may have more pieces than were sent: its ids stop where real ones wrap.
        add(i === 0 ? t.firstId + w : Math.min(nextId++, MAX_REQUEST_ID), r, p);
      });
    }
    return v;
  }

  /**
   * Per-worker counters follow the backend's slots: workers that joined get theirs, and those whose
   * slots were pruned (left, done) are folded into the layer's `departed` counters, so totals stay.
   */
  private followSlots(): void {
    const view = this.backend.view;
    const current = new Set(view.slots.map((s) => s.id));
    for (const id of this.stats.workerIds.filter((i) => !current.has(i))) this.stats.removeWorker(id);
    const known = new Set(this.stats.workerIds);
    view.slots.forEach((s, w) => {
      if (!known.has(s.id)) this.stats.addWorker(statsWorker(view, w));
    });
  }

  private fresh(): DispatchStats {
    const view = this.backend.view;
    return new DispatchStats(
      {
        wire: this.backend.wire,
        nativeK: this.model.nativeK,
        hidden: this.model.hidden,
        workers: view.slots.map((_, w) => statsWorker(view, w)),
      },
      this.routing.numLayers,
    );
  }
}

function statsWorker(view: ClusterView, w: number): StatsWorker {
  const { id, url } = view.slots[w]!;
  return { id, url, experts: formatExpertSet(view.placement.workers[w]!.experts) };
}

/** `a` without its pairs on `experts`. */
function withoutExperts(a: ExpertAssignment, experts: readonly number[]): ExpertAssignment {
  const gone = new Set(experts);
  const offsets = new Int32Array(a.numTokens + 1);
  const kept: number[] = [];
  const weights: number[] = [];
  for (let t = 0; t < a.numTokens; t++) {
    for (let j = a.offsets[t]!; j < a.offsets[t + 1]!; j++) {
      if (gone.has(a.experts[j]!)) continue;
      kept.push(a.experts[j]!);
      weights.push(a.weights[j]!);
    }
    offsets[t + 1] = kept.length;
  }
  return {
    numTokens: a.numTokens,
    offsets,
    experts: Int32Array.from(kept),
    weights: Float32Array.from(weights),
  };
}
