// Hosts a set of experts (every layer) as one onnxruntime session per (layer, expert) and computes,
// for a batch of tokens, the weighted sum of the experts each token was assigned. The same unit
// serves the single-process engine and a remote worker; it never knows which policy chose the pairs.

import type { ExpertAssignment } from '../moe/expert-assignment.js';
import type { F32Tensor } from '../tensor.js';
import { collectGarbage } from './collect-garbage.js';
import { ExpertNotHeldError } from './errors.js';
import { type ExpertWeightFormat, requireWeightFormatOnDevice } from './expert-weight-format.js';
import { f32Input, Session, type SessionSettings } from './session.js';

/**
 * The serialized ONNX graph of one expert (inputs x [N,H], weight [N,1]; output y [N,H]) with its
 * weights in `format`. The model family builds it (`family.expertGraph`); the host only runs it.
 */
export type ExpertGraphSource = (
  layer: number,
  expert: number,
  format: ExpertWeightFormat,
) => Promise<Uint8Array>;

/** The sizes the host needs (a family's GraphDims has them). */
export interface ExpertHostDims {
  readonly hidden: number;
  /** Routed experts per layer. */
  readonly experts: number;
}

/** Work done by one compute() call, for accounting. */
export interface ExpertWork {
  readonly pairs: number;
  readonly sessionCalls: number;
}

/** Serialized expert graphs from this size on are followed by a garbage collection (see create). */
const COLLECT_AFTER_GRAPH_BYTES = 64 * 2 ** 20;

/** One expert's session; its serialized graph is unreachable once this returns. */
async function expertSession(
  graph: ExpertGraphSource,
  layer: number,
  expert: number,
  settings: SessionSettings,
): Promise<{ session: Session; large: boolean }> {
  const bytes = await graph(layer, expert, settings.expertWeights);
  const large = bytes.byteLength >= COLLECT_AFTER_GRAPH_BYTES;
  // The weights the graph was built from are garbage now: freed before onnxruntime copies the graph.
  if (large) collectGarbage();
  return { session: Session.create(`expert ${expert} layer ${layer}`, 'expert', bytes, settings), large };
}

export class ExpertHost {
  /**
   * Reused inputs and outputs of the expert calls: compute() runs its calls back to back without
   * awaiting, and reads each output before the next call, so one buffer serves every call (fewer
   * short-lived buffers for the garbage collector, one decode token makes 8 such calls and more).
   */
  private rowsScratch = new Float32Array(0);
  private outScratch = new Float32Array(0);

  private constructor(
    private readonly dims: ExpertHostDims,
    private held: readonly number[],
    private readonly sessions: (Session | undefined)[][], // [layer][expert]
    private readonly moeLayers: readonly number[],
  ) {}

  /** The experts held (in every MoE layer), ascending. */
  get experts(): readonly number[] {
    return this.held;
  }

  static async create(opts: {
    dims: ExpertHostDims;
    numLayers: number;
    /** Decoder layers that have routed experts (a family's MoE layers); absent = every layer. */
    moeLayers?: readonly number[];
    experts: readonly number[];
    graph: ExpertGraphSource;
    settings: SessionSettings;
    onProgress?: (done: number, total: number) => void;
  }): Promise<ExpertHost> {
    const { dims, numLayers, experts, graph, settings } = opts;
    const moeLayers = [...new Set(opts.moeLayers ?? Array.from({ length: numLayers }, (_, l) => l))].sort(
      (a, b) => a - b,
    );
    // A dense layer keeps an empty row: a dispatch to it is an ExpertNotHeldError, not a crash.
    const sessions = Array.from({ length: numLayers }, () =>
      new Array<Session | undefined>(dims.experts).fill(undefined),
    );
    const host = new ExpertHost(dims, [], sessions, moeLayers);
    try {
      await host.load(experts, graph, settings, opts.onProgress);
    } catch (err) {
      host.release();
      throw err;
    }
    return host;
  }

  holds(expert: number): boolean {
    return this.held.includes(expert);
  }

  /**
   * Adds experts while the host serves (`kmoe cluster rebalance`): builds their sessions in every
   * MoE layer first and only then counts them as held, so a failure leaves the host as it was.
   * Experts already held are skipped. Returns the experts held afterwards.
   */
  async load(
    experts: readonly number[],
    graph: ExpertGraphSource,
    settings: SessionSettings,
    onProgress?: (done: number, total: number) => void,
  ): Promise<readonly number[]> {
    const added = [...new Set(experts)].filter((e) => !this.held.includes(e));
    for (const e of added)
      if (!Number.isInteger(e) || e < 0 || e >= this.dims.experts)
        throw new RangeError(`expert ${e} out of range (the model has ${this.dims.experts})`);
    requireWeightFormatOnDevice(settings.expertWeights, settings.device);
    const built: { layer: number; expert: number; session: Session }[] = [];
    try {
      for (const l of this.moeLayers) {
        for (const e of added) {
          const { session, large } = await expertSession(graph, l, e, settings);
          // A large expert's transient buffers go now, not experts later: peak RSS stays near what
          // is held. Twice, a moment apart: V8 frees ArrayBuffer memory after a collection, and the
          // second one finishes that (measured: 1 fp32 8x7B-shaped expert 2.0 GB -> 1.4 GB held).
          if (large) {
            collectGarbage();
            await new Promise((resolve) => setTimeout(resolve, 10));
            collectGarbage();
          }
          built.push({ layer: l, expert: e, session });
          onProgress?.(built.length, this.moeLayers.length * added.length);
        }
      }
    } catch (err) {
      for (const b of built) b.session.release();
      throw err;
    }
    for (const b of built) this.sessions[b.layer]![b.expert] = b.session;
    this.held = [...this.held, ...added].sort((a, b) => a - b);
    return this.held;
  }

  /**
   * Drops experts (their sessions and weights) while the host serves. The caller makes sure no
   * request for them is still queued (the worker stops accepting them first). Returns the experts
   * held afterwards.
   */
  unload(experts: readonly number[]): readonly number[] {
    const drop = new Set(experts.filter((e) => this.held.includes(e)));
    for (const row of this.sessions) {
      for (const e of drop) {
        row[e]?.release();
        row[e] = undefined;
      }
    }
    this.held = this.held.filter((e) => !drop.has(e));
    return this.held;
  }

  /**
   * out[t] (+)= sum over t's pairs of weight * expert(x[t]). Rows of one expert are gathered into
   * one batch so each expert costs one session call per layer, whatever the number of tokens.
   * With `accumulate`, results are added into that [n, hidden] buffer (e.g. the residual stream).
   */
  async compute(
    layer: number,
    x: F32Tensor,
    pairs: ExpertAssignment,
    accumulate?: Float32Array,
  ): Promise<{ out: F32Tensor; work: ExpertWork }> {
    const H = this.dims.hidden;
    const n = pairs.numTokens;
    if (x.shape.length !== 2 || x.shape[0] !== n || x.shape[1] !== H) {
      throw new RangeError(`expert input shape [${x.shape.join(', ')}] does not match [${n}, ${H}]`);
    }
    const out = accumulate ?? new Float32Array(n * H);
    if (out.length !== n * H)
      throw new RangeError(`accumulator has ${out.length} elements, expected ${n * H}`);
    const layerSessions = this.sessions[layer];
    if (!layerSessions) throw new RangeError(`layer ${layer} out of range`);

    const E = this.dims.experts;
    const counts = new Int32Array(E);
    const total = pairs.offsets[n]!;
    for (let j = 0; j < total; j++) {
      const e = pairs.experts[j]!;
      if (layerSessions[e] === undefined) throw new ExpertNotHeldError(layer, e, this.held);
      counts[e]!++;
    }
    // Bucket pair indices by expert (counting sort keeps token order within an expert).
    const starts = new Int32Array(E + 1);
    for (let e = 0; e < E; e++) starts[e + 1] = starts[e]! + counts[e]!;
    const fill = starts.slice(0, E);
    const rowToken = new Int32Array(total);
    const rowWeight = new Float32Array(total);
    for (let t = 0; t < n; t++) {
      for (let j = pairs.offsets[t]!; j < pairs.offsets[t + 1]!; j++) {
        const slot = fill[pairs.experts[j]!]!++;
        rowToken[slot] = t;
        rowWeight[slot] = pairs.weights[j]!;
      }
    }

    let sessionCalls = 0;
    const xs = x.data;
    let largest = 0;
    for (let e = 0; e < E; e++) largest = Math.max(largest, counts[e]!);
    if (this.rowsScratch.length < largest * H) {
      this.rowsScratch = new Float32Array(largest * H);
      this.outScratch = new Float32Array(largest * H);
    }
    for (let e = 0; e < E; e++) {
      const m = counts[e]!;
      if (m === 0) continue;
      const base = starts[e]!;
      const xe = this.rowsScratch.subarray(0, m * H);
      for (let r = 0; r < m; r++) {
        const t = rowToken[base + r]!;
        xe.set(xs.subarray(t * H, t * H + H), r * H);
      }
      const ye = this.outScratch.subarray(0, m * H);
      layerSessions[e]!.run(
        {
          x: f32Input(xe, [m, H]),
          weight: f32Input(rowWeight.subarray(base, base + m), [m, 1]),
        },
        { y: f32Input(ye, [m, H]) },
      );
      sessionCalls++;
      for (let r = 0; r < m; r++) {
        const o = rowToken[base + r]! * H;
        const y = r * H;
        for (let i = 0; i < H; i++) out[o + i]! += ye[y + i]!;
      }
    }
    return { out: { dtype: 'float32', shape: [n, H], data: out }, work: { pairs: total, sessionCalls } };
  }

  release(): void {
    for (const row of this.sessions) for (const s of row) s?.release();
  }
}
