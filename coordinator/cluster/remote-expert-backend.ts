// ExpertBackend whose experts live in worker processes: per MoE layer it groups the batch's
// (token, expert, weight) triples per worker, sends each worker one frame with the distinct
// tokens it needs, awaits every reply (with a timeout) and adds the partial sums into the
// residual. Runs on the engine thread; knows sockets and bytes, never routing policies.

import type { TokenExpertPairs } from '../../shared/onnx/expert-host.js';
import {
  allocDispatchRequest,
  type DispatchShape,
  dispatchRequestBytes,
  dispatchResultBytes,
} from '../../shared/protocol/codec.js';
import { formatExpertSet } from '../../shared/protocol/expert-set.js';
import {
  type DispatchResult,
  type ExpertIndexDType,
  expertIndexDType,
} from '../../shared/protocol/messages.js';
import { fromWire, toWire, type WireDType } from '../../shared/protocol/wire-dtype.js';
import type { F32Tensor } from '../../shared/tensor.js';
import type { ExpertBackend } from '../engine/expert-backend.js';
import { planDispatch, shareSizes, type WorkerShare } from './dispatch-plan.js';
import { DispatchStats, type DispatchStatsJSON, type VariantCounters } from './dispatch-stats.js';
import { PlacementError, WorkerRequestError } from './errors.js';
import { PlacementTable, type WorkerExperts } from './placement.js';
import { WorkerConnection } from './worker-connection.js';

export const DEFAULT_DISPATCH_TIMEOUT_MS = 30_000;
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

export interface RemoteExpertsOptions {
  readonly workers: readonly string[];
  readonly wire: WireDType;
  /** Per dispatch request, from send to result. */
  readonly timeoutMs?: number;
  readonly handshakeTimeoutMs?: number;
}

/** What the backend must know about the coordinator's model. */
export interface RemoteModel {
  readonly fingerprint: string;
  readonly numLayers: number;
  readonly numExperts: number;
  readonly hidden: number;
  readonly nativeK: number;
}

export class RemoteExpertBackend implements ExpertBackend {
  readonly wantsNativeBaseline = true;
  private stats: DispatchStats;
  private nextId = 0;
  private scratch = new Float32Array(0);
  private readonly index: ExpertIndexDType;
  private readonly timeoutMs: number;

  private constructor(
    private readonly connections: readonly WorkerConnection[],
    readonly placement: PlacementTable,
    private readonly model: RemoteModel,
    readonly wire: WireDType,
    timeoutMs: number,
  ) {
    this.index = expertIndexDType(model.numExperts);
    this.timeoutMs = timeoutMs;
    this.stats = this.freshStats();
  }

  /**
   * Connects to every worker (in parallel), checks the handshakes and that the workers cover every
   * expert. On any failure the connections made so far are closed and the error names the worker
   * or the missing experts.
   */
  static async connect(options: RemoteExpertsOptions, model: RemoteModel): Promise<RemoteExpertBackend> {
    if (options.workers.length === 0) throw new PlacementError('no workers given', { missing: [] });
    const dupes = options.workers.filter((u, i) => options.workers.indexOf(u) !== i);
    if (dupes.length > 0)
      throw new PlacementError(`worker ${dupes[0]} is listed twice`, {
        missing: [],
        hint: 'list each worker once',
      });
    const attempts = await Promise.allSettled(
      options.workers.map((url) =>
        WorkerConnection.connect(url, {
          fingerprint: model.fingerprint,
          wire: options.wire,
          model: { numLayers: model.numLayers, numExperts: model.numExperts, hidden: model.hidden },
          handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
          client: `kmoe coordinator pid ${process.pid}`,
        }),
      ),
    );
    const connections = attempts.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
    try {
      const failed = attempts.find((a) => a.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      const placement = PlacementTable.create(
        connections.map((c): WorkerExperts => ({ url: c.url, experts: c.welcome.experts })),
        model.numExperts,
      );
      return new RemoteExpertBackend(
        connections,
        placement,
        model,
        options.wire,
        options.timeoutMs ?? DEFAULT_DISPATCH_TIMEOUT_MS,
      );
    } catch (err) {
      await Promise.all(connections.map((c) => c.close()));
      throw err;
    }
  }

  get description(): string {
    const n = this.connections.length;
    return `remote experts on ${n} worker${n === 1 ? '' : 's'} (${this.placement.describe()}), ${this.wire} wire`;
  }

  async compute(
    layer: number,
    x: F32Tensor,
    pairs: TokenExpertPairs,
    accumulate: Float32Array,
    tokenBytes: Float64Array,
    native?: TokenExpertPairs,
  ): Promise<void> {
    const H = this.model.hidden;
    const W = this.connections.length;
    const live = this.connections.map((c) => c.alive);
    const shares = planDispatch(pairs, this.placement.assign(pairs, live), W);
    // Ids are reserved per worker slot, so the costed variants below can size the same headers.
    if (this.nextId + W > 0xffffffff) this.nextId = 0;
    const firstId = this.nextId;
    this.nextId += W;

    const frames = shares.map((s) => this.encode(layer, firstId + s.worker, s, x.data));
    const sentAt = performance.now();
    const seconds = new Float64Array(shares.length);
    const inflight = shares.map((s, i) =>
      this.connections[s.worker]!.request(firstId + s.worker, layer, frames[i]!, this.timeoutMs).then((r) => {
        seconds[i] = (performance.now() - sentAt) / 1000;
        return r;
      }),
    );
    let results: DispatchResult[];
    try {
      results = await Promise.all(inflight);
    } catch (err) {
      // One worker failed the layer: the others' replies are no longer wanted.
      for (const p of inflight) p.catch(() => {});
      for (const s of shares) this.connections[s.worker]!.cancel(firstId + s.worker);
      throw err;
    }

    shares.forEach((s, i) => {
      const r = results[i]!;
      const n = s.tokens.length;
      if (r.numTokens !== n || r.wire !== this.wire) {
        throw new WorkerRequestError(
          this.connections[s.worker]!.url,
          'bad-reply',
          `worker ${this.connections[s.worker]!.label} answered ${r.numTokens} ${r.wire} rows for ${n} ${this.wire} tokens (layer ${layer} dispatch)`,
        );
      }
      addRows(accumulate, fromWire(r.partial, r.wire, this.widened(r.partial.length)), s.tokens, H);
      const bytesOut = frames[i]!.byteLength;
      const bytesIn = this.resultBytes(firstId + s.worker, n);
      const perToken = (bytesOut + bytesIn) / n;
      for (let row = 0; row < n; row++) tokenBytes[s.tokens[row]!]! += perToken;
      this.stats.recordMessage(layer, s.worker, {
        bytesOut,
        bytesIn,
        pairs: s.experts.length,
        tokensSent: n,
        seconds: seconds[i]!,
      });
    });
    this.stats.recordLayer(layer, pairs.numTokens, this.costVariants(layer, firstId, pairs, native, live));
  }

  /** Accounting so far; `reset` starts a new period. */
  dispatchStats(reset: boolean): DispatchStatsJSON {
    const json = this.stats.toJSON();
    if (reset) this.stats = this.freshStats();
    return json;
  }

  async close(): Promise<void> {
    await Promise.all(this.connections.map((c) => c.close()));
  }

  /** fp32 scratch for widening 16-bit partial sums (one reply is combined at a time). */
  private widened(n: number): Float32Array | undefined {
    if (this.wire === 'fp32') return undefined;
    if (this.scratch.length < n) this.scratch = new Float32Array(n);
    return this.scratch.subarray(0, n);
  }

  private freshStats(): DispatchStats {
    return new DispatchStats(
      {
        wire: this.wire,
        nativeK: this.model.nativeK,
        hidden: this.model.hidden,
        workers: this.placement.workers.map((w) => ({ url: w.url, experts: formatExpertSet(w.experts) })),
      },
      this.model.numLayers,
    );
  }

  private shape(id: number, layer: number, numTokens: number, numPairs: number): DispatchShape {
    return { id, layer, wire: this.wire, numTokens, numPairs, hidden: this.model.hidden, index: this.index };
  }

  private resultBytes(id: number, numTokens: number): number {
    return dispatchResultBytes({ id, wire: this.wire, numTokens, hidden: this.model.hidden });
  }

  private encode(layer: number, id: number, s: WorkerShare, x: Float32Array): Uint8Array {
    const H = this.model.hidden;
    const frame = allocDispatchRequest(
      this.shape(id, layer, s.tokens.length, s.experts.length),
      this.connections[s.worker]!.frameAllocator,
    );
    for (let row = 0; row < s.tokens.length; row++) {
      const t = s.tokens[row]!;
      toWire(x.subarray(t * H, (t + 1) * H), this.wire, frame.hidden.subarray(row * H, (row + 1) * H));
    }
    frame.offsets.set(s.offsets);
    frame.experts.set(s.experts);
    frame.weights.set(s.weights);
    return frame.bytes;
  }

  /**
   * The same batch costed (not sent) without dedup and under native top-K, with the frame sizes
   * the protocol would produce: same ids, same placement rule, same live workers.
   */
  private costVariants(
    layer: number,
    firstId: number,
    pairs: TokenExpertPairs,
    native: TokenExpertPairs | undefined,
    live: readonly boolean[],
  ): { noDedup: VariantCounters; native: VariantCounters; nativeNoDedup: VariantCounters } {
    const W = this.connections.length;
    const cost = (p: TokenExpertPairs, dedup: boolean): VariantCounters => {
      const sizes = shareSizes(p, this.placement.assign(p, live), W);
      const v: VariantCounters = { messages: 0, bytes: 0, pairs: 0, tokensSent: 0 };
      for (let w = 0; w < W; w++) {
        const m = sizes.pairs[w]!;
        if (m === 0) continue;
        const n = dedup ? sizes.tokens[w]! : m;
        v.messages++;
        v.pairs += m;
        v.tokensSent += n;
        v.bytes +=
          dispatchRequestBytes(this.shape(firstId + w, layer, n, m)) + this.resultBytes(firstId + w, n);
      }
      return v;
    };
    const baseline = native ?? pairs;
    return {
      noDedup: cost(pairs, false),
      native: cost(baseline, true),
      nativeNoDedup: cost(baseline, false),
    };
  }
}

/** acc[tokens[r]] += partial[r] for every row r of width H. */
function addRows(acc: Float32Array, partial: Float32Array, tokens: Int32Array, H: number): void {
  for (let r = 0; r < tokens.length; r++) {
    const o = tokens[r]! * H;
    const p = r * H;
    for (let i = 0; i < H; i++) acc[o + i]! += partial[p + i]!;
  }
}
