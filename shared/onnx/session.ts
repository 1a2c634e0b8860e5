// onnxruntime sessions with kmoe's settings, run synchronously through onnxruntime-node's native
// binding. Must be used off the main thread of any process that also serves network traffic: a run
// blocks its thread.
//
// Why the binding and not InferenceSession.run: the public run() defers every call through
// setImmediate (one event-loop turn, 15-25 us measured here) and cannot write into caller-owned
// buffers. A decode step makes ~13 calls, so that turn alone cost ~25% of decode throughput.
// The binding is the typed object onnxruntime-node itself wraps (dist/binding.d.ts); the package
// version is pinned exactly in package.json because this is not its public API.

import os from 'node:os';
import ort from 'onnxruntime-node';
import { binding, initOrt } from 'onnxruntime-node/dist/binding.js';
import { DeviceUnavailableError, SessionError } from './errors.js';
import type { DenseWeightFormat, ExpertWeightFormat } from './expert-weight-format.js';

export type Device = 'cpu' | 'cuda';

export interface SessionSettings {
  readonly device: Device;
  /** Intra-op threads per session; sessions run one at a time, so this is the process's compute width. */
  readonly threads: number;
  /** How the expert FFNs of this process compute; see ExpertWeightFormat. */
  readonly expertWeights: ExpertWeightFormat;
  /** How the dense layers and the LM head compute; absent = fp32. See DenseWeightFormat. */
  readonly denseWeights?: DenseWeightFormat;
}

export function defaultSessionSettings(): SessionSettings {
  return { device: 'cpu', threads: os.availableParallelism(), expertWeights: 'fp32' };
}

export type Feeds = Record<string, ort.Tensor>;
export type Outputs = Record<string, ort.Tensor>;

type NativeSession = InstanceType<typeof binding.InferenceSession>;

/** Time spent inside onnxruntime per kind of graph, for `kmoe bench` breakdowns (off by default). */
export interface RunTiming {
  calls: number;
  ms: number;
}

const timings = new Map<string, RunTiming>();
let timingEnabled = false;

/** Turns per-kind run timing on or off (this thread only) and clears what was collected. */
export function setRunTiming(enabled: boolean): void {
  timingEnabled = enabled;
  timings.clear();
}

export function runTimings(): Record<string, RunTiming> {
  return Object.fromEntries([...timings].map(([k, v]) => [k, { ...v }]));
}

export class Session {
  private constructor(
    readonly graph: string,
    /** Kind of graph (dense, expert, lm-head...): the key of run timings. */
    readonly kind: string,
    private readonly native: NativeSession,
    readonly outputNames: readonly string[],
  ) {}

  static create(graph: string, kind: string, model: Uint8Array, settings: SessionSettings): Session {
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: [settings.device],
      intraOpNumThreads: settings.threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      // Dozens of small sessions share the cores and run back to back: spinning pool threads of
      // one session would steal the cores from the next (measured: 2x slower expert GEMMs).
      extra: { session: { 'intra_op.allow_spinning': '0', 'inter_op.allow_spinning': '0' } },
      // Each session's arena keeps the high-water mark of its largest call for the process's
      // lifetime: one 16k-row prefill left a worker's 16 expert sessions holding ~1 GB. Without
      // it, large buffers go back to the system when the call ends; small calls run as fast
      // (docs/bench-native/cpu-arena.mjs, docs/performance.md).
      enableCpuMemArena: false,
    };
    // Without CUDA, onnxruntime's default logger prints a raw native error about a missing shared
    // library before loadModel throws; kmoe reports the same failure as DeviceUnavailableError
    // with a hint, so for a non-CPU device the native log keeps fatal messages only (onnxruntime
    // takes the level when it first initialises in the process).
    if (settings.device !== 'cpu') ort.env.logLevel = 'fatal';
    initOrt();
    const native = new binding.InferenceSession();
    try {
      native.loadModel(model.buffer as ArrayBuffer, model.byteOffset, model.byteLength, options);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (settings.device !== 'cpu' && /ExecutionProvider|shared library|provider/i.test(message)) {
        throw new DeviceUnavailableError(settings.device, err);
      }
      throw new SessionError(graph, `could not be created: ${message}`, err);
    }
    return new Session(
      graph,
      kind,
      native,
      native.outputMetadata.map((m) => m.name),
    );
  }

  /**
   * Runs the graph. Outputs given in `into` are written into those caller-owned tensors (their
   * shapes must be exact); the others are allocated by onnxruntime.
   */
  run(feeds: Feeds, into: Partial<Outputs> = {}): Outputs {
    // The binding pairs results with output names by position, so every output is fetched in order.
    const fetches: Record<string, ort.Tensor | null> = {};
    for (const name of this.outputNames) fetches[name] = into[name] ?? null;
    let result: Record<string, ort.OnnxValue>;
    const started = timingEnabled ? performance.now() : 0;
    try {
      result = this.native.run(feeds, fetches, {});
    } catch (err) {
      throw new SessionError(
        this.graph,
        `run failed: ${err instanceof Error ? err.message : String(err)}`,
        err,
      );
    }
    if (timingEnabled) {
      const t = timings.get(this.kind) ?? { calls: 0, ms: 0 };
      t.calls++;
      t.ms += performance.now() - started;
      timings.set(this.kind, t);
    }
    const out: Outputs = {};
    for (const name of this.outputNames) out[name] = into[name] ?? (result[name] as ort.Tensor);
    return out;
  }

  release(): void {
    this.native.dispose();
  }
}

export function f32Input(data: Float32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

export function i64Input(data: BigInt64Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('int64', data, dims);
}

export function f32Output(out: Outputs, name: string): Float32Array {
  const t = out[name];
  if (t?.type !== 'float32') throw new SessionError(name, `missing float32 output '${name}'`);
  return t.data as Float32Array;
}
