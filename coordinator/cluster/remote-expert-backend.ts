// ExpertBackend whose experts live in worker processes: per MoE layer it groups the batch's
// (token, expert, weight) triples per worker, sends each worker one frame with the distinct
// tokens it needs, awaits every reply (with a timeout) and adds the partial sums into the
// residual, reporting what each message moved. Runs on the engine thread; knows sockets and bytes,
// never routing policies or accounting (dispatch-accounting.ts observes the transfers it reports).

import type { ExpertAssignment } from '../../shared/moe/expert-assignment.js';
import { ClusterSecret } from '../../shared/protocol/auth.js';
import {
  allocDispatchRequest,
  type DispatchShape,
  dispatchRequestBytes,
  dispatchResultBytes,
} from '../../shared/protocol/codec.js';
import {
  type DispatchResult,
  type ExpertIndexDType,
  expertIndexDType,
} from '../../shared/protocol/messages.js';
import { fromWire, toWire, type WireDType } from '../../shared/protocol/wire-dtype.js';
import type { F32Tensor } from '../../shared/tensor.js';
import type { ExpertBackend, ExpertTransfer, TransferMessage } from '../moe/expert-backend.js';
import { planDispatch, type WorkerShare } from './dispatch-plan.js';
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
  /** The cluster token every worker must prove, and this coordinator proves to them; none: no auth. */
  readonly clusterToken?: string;
}

/** What the backend must know about the coordinator's model. */
export interface RemoteModel {
  readonly fingerprint: string;
  readonly numLayers: number;
  readonly numExperts: number;
  readonly hidden: number;
  readonly nativeK: number;
}

/** A layer's transfer, with what is needed to cost the same layer sent another way. */
export interface RemoteTransfer extends ExpertTransfer {
  /** Request ids of this layer are firstId + worker index (header sizes depend on them). */
  readonly firstId: number;
  /** Which workers were live when the layer was planned. */
  readonly live: readonly boolean[];
}

/** A worker connection dropped (first time only): the cluster's liveness source on the engine thread. */
export interface WorkerDown {
  readonly url: string;
  readonly reason: string;
}

export class RemoteExpertBackend implements ExpertBackend<RemoteTransfer> {
  private nextId = 0;
  private scratch = new Float32Array(0);
  private readonly index: ExpertIndexDType;
  private readonly timeoutMs: number;

  /** Worker slots that left the membership: never routed to again unless the worker rejoins. */
  private readonly retired = new Set<number>();

  private constructor(
    /** Worker slots: a joining worker is appended or takes the slot of its URL; slots never move. */
    private readonly connections: WorkerConnection[],
    private table: PlacementTable,
    private readonly model: RemoteModel,
    readonly wire: WireDType,
    timeoutMs: number,
    private readonly dial: (url: string) => Promise<WorkerConnection>,
  ) {
    this.index = expertIndexDType(model.numExperts);
    this.timeoutMs = timeoutMs;
  }

  get placement(): PlacementTable {
    return this.table;
  }

  /**
   * A worker joined the membership (or came back): connects to it and routes to it from the next
   * layer on. A URL already connected and live is left alone; a dead or retired one is redialled
   * into its old slot, so slot numbers (and accounting) stay stable.
   */
  async join(url: string): Promise<WorkerExperts> {
    const slot = this.connections.findIndex((c) => c.url === url);
    const current = slot >= 0 ? this.connections[slot]! : undefined;
    if (current?.alive && !this.retired.has(slot)) return { url, experts: current.welcome.experts };
    const c = await this.dial(url);
    const workers = this.connections.map((w): WorkerExperts => ({ url: w.url, experts: w.welcome.experts }));
    if (slot >= 0) workers[slot] = { url, experts: c.welcome.experts };
    else workers.push({ url, experts: c.welcome.experts });
    let table: PlacementTable;
    try {
      table = PlacementTable.create(workers, this.model.numExperts);
    } catch (err) {
      await c.close();
      throw err;
    }
    if (slot >= 0) {
      this.connections[slot] = c;
      this.retired.delete(slot);
      await current?.close();
    } else this.connections.push(c);
    this.table = table;
    return { url, experts: c.welcome.experts };
  }

  /**
   * A worker left the membership (deregistered to drain, or its registration expired): no new
   * layer is routed to it; requests already sent complete on the open connection, which the
   * worker closes when it exits. Returns false for an unknown URL.
   */
  leave(url: string): boolean {
    const slot = this.connections.findIndex((c) => c.url === url);
    if (slot < 0) return false;
    this.retired.add(slot);
    return true;
  }

  /**
   * Connects to every worker (in parallel), checks the handshakes and that the workers cover every
   * expert. On any failure the connections made so far are closed and the error names the worker
   * or the missing experts.
   */
  static async connect(
    options: RemoteExpertsOptions,
    model: RemoteModel,
    onWorkerDown?: (e: WorkerDown) => void,
  ): Promise<RemoteExpertBackend> {
    if (options.workers.length === 0) throw new PlacementError('no workers given', { missing: [] });
    const dupes = options.workers.filter((u, i) => options.workers.indexOf(u) !== i);
    if (dupes.length > 0)
      throw new PlacementError(`worker ${dupes[0]} is listed twice`, {
        missing: [],
        hint: 'list each worker once',
      });
    const secret = options.clusterToken === undefined ? undefined : new ClusterSecret(options.clusterToken);
    const dial = (url: string) =>
      WorkerConnection.connect(url, {
        fingerprint: model.fingerprint,
        wire: options.wire,
        model: { numLayers: model.numLayers, numExperts: model.numExperts, hidden: model.hidden },
        handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
        client: `kmoe coordinator pid ${process.pid}`,
        ...(secret === undefined ? {} : { secret }),
        ...(onWorkerDown ? { onDown: (reason: string) => onWorkerDown({ url, reason }) } : {}),
      });
    const attempts = await Promise.allSettled(options.workers.map(dial));
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
        dial,
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
    assignment: ExpertAssignment,
    accumulate: Float32Array,
  ): Promise<RemoteTransfer> {
    const H = this.model.hidden;
    const W = this.connections.length;
    const live = this.connections.map((c, i) => c.alive && !this.retired.has(i));
    const shares = planDispatch(assignment, this.placement.assign(assignment, live), W);
    // Ids are reserved per worker slot, so accounting can cost other variants with the same headers.
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

    const messages: TransferMessage[] = shares.map((s, i) => {
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
      return {
        worker: s.worker,
        tokens: s.tokens,
        pairs: s.experts.length,
        bytesOut: frames[i]!.byteLength,
        bytesIn: this.resultBytes(firstId + s.worker, n),
        seconds: seconds[i]!,
      };
    });
    return { messages, firstId, live };
  }

  /** Bytes (both ways) of a request of this shape to worker slot `worker` of the layer, and its reply. */
  messageBytes(layer: number, firstId: number, worker: number, numTokens: number, numPairs: number): number {
    return (
      dispatchRequestBytes(this.shape(firstId + worker, layer, numTokens, numPairs)) +
      this.resultBytes(firstId + worker, numTokens)
    );
  }

  get numWorkers(): number {
    return this.connections.length;
  }

  get hidden(): number {
    return this.model.hidden;
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
}

/** acc[tokens[r]] += partial[r] for every row r of width H. */
function addRows(acc: Float32Array, partial: Float32Array, tokens: Int32Array, H: number): void {
  for (let r = 0; r < tokens.length; r++) {
    const o = tokens[r]! * H;
    const p = r * H;
    for (let i = 0; i < H; i++) acc[o + i]! += partial[p + i]!;
  }
}
