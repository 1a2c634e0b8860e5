// `kmoe bench expert`'s measurements: one SwiGLU expert of a real model's shape (seeded synthetic
// weights, built by kmoe's own graph builder) across token batches, next to this machine's GEMM
// peak and memory bandwidth measured by onnxruntime in the same run, so ratios are comparable.

import { bf16ToF32 } from '../../shared/dtype.js';
import type { ModelConfig, TensorSource } from '../../shared/families/family.js';
import { familyOf, modelFamily } from '../../shared/families/registry.js';
import type { ExpertRole } from '../../shared/families/tensor-table.js';
import type { ExpertWeightFormat } from '../../shared/onnx/expert-weight-format.js';
import { EXPERT_WEIGHT_BYTES, requireWeightFormatOnDevice } from '../../shared/onnx/expert-weight-format.js';
import { GraphBuilder } from '../../shared/onnx/graph-builder.js';
import { f32Input, Session, type SessionSettings } from '../../shared/onnx/session.js';
import type { F32Tensor } from '../../shared/tensor.js';
import { ExpertBenchError } from './errors.js';
import { mulberry32, synthValues } from './prng.js';

export interface ExpertShape {
  readonly hidden: number;
  readonly ffn: number;
}

export interface ExpertBenchOptions {
  readonly shape: ExpertShape;
  readonly formats: readonly ExpertWeightFormat[];
  readonly batches: readonly number[];
  readonly settings: Omit<SessionSettings, 'expertWeights'>;
  readonly seed: number;
  /** Time budget per measured point; each point runs at least MIN_ITERS timed calls. */
  readonly secondsPerPoint: number;
  /** The peak GEMM: [m, k] x [k, n] fp32. */
  readonly peakGemm: { readonly m: number; readonly k: number; readonly n: number };
  /** Bytes streamed by the bandwidth probe per call (a ReduceSum over an fp32 input). */
  readonly bandwidthBytes: number;
  readonly onProgress?: (what: string) => void;
}

export interface ExpertPoint {
  readonly format: ExpertWeightFormat;
  readonly batch: number;
  /** Median seconds per call of the expert graph. */
  readonly seconds: number;
  readonly tokensPerSecond: number;
  /** 6 x batch x hidden x ffn (three matmuls) per call; SiLU and products are not counted. */
  readonly gflopPerSecond: number;
  readonly fractionOfPeak: number;
  /** Weight bytes the call must read (the memory-bound regime at small batches). */
  readonly weightBytes: number;
  readonly weightGBPerSecond: number;
  readonly fractionOfBandwidth: number;
}

export interface ExpertBenchResult {
  readonly shape: ExpertShape;
  readonly peak: {
    readonly m: number;
    readonly k: number;
    readonly n: number;
    readonly gflopPerSecond: number;
  };
  readonly bandwidth: { readonly bytes: number; readonly gbPerSecond: number };
  readonly points: readonly ExpertPoint[];
}

const WARMUP = 2;
const MIN_ITERS = 3;

export function expertFlops(shape: ExpertShape, batch: number): number {
  return 6 * batch * shape.hidden * shape.ffn;
}

export function expertWeightBytes(shape: ExpertShape, format: ExpertWeightFormat): number {
  return 3 * shape.hidden * shape.ffn * EXPERT_WEIGHT_BYTES[format];
}

/** The family whose expert graph is measured: the shapes `kmoe synth` writes are Mixtral's. */
const BENCH_MODEL_TYPE = 'mixtral';

/**
 * A one-layer, one-expert config of the bench family with this expert shape (one head, a two-id
 * vocabulary): all an expert graph needs, parsed by the family like any config.json.
 */
export function expertBenchConfig(shape: ExpertShape): ModelConfig {
  return modelFamily(BENCH_MODEL_TYPE).parseConfig({
    model_type: BENCH_MODEL_TYPE,
    hidden_size: shape.hidden,
    intermediate_size: shape.ffn,
    num_hidden_layers: 1,
    num_attention_heads: 1,
    num_key_value_heads: 1,
    num_local_experts: 1,
    num_experts_per_tok: 1,
    vocab_size: 2,
    rms_norm_eps: 1e-5,
    max_position_embeddings: 1,
    bos_token_id: 0,
    eos_token_id: 1,
  });
}

/** Seeded weights of expert 0 of layer 0, the values `kmoe synth` would write for that seed. */
export function synthExpertWeights(shape: ExpertShape, seed: number): Record<ExpertRole, F32Tensor> {
  const config = expertBenchConfig(shape);
  const family = familyOf(config);
  const names = family.tensorNames.expert(0, 0);
  const shapes = family.expectedShapes(config).expert;
  const mat = (role: ExpertRole): F32Tensor => {
    const dims = shapes[role];
    return {
      dtype: 'float32',
      shape: [...dims],
      data: bf16ToF32(
        synthValues(
          seed,
          names[role],
          dims.reduce((a, b) => a * b, 1),
        ),
      ),
    };
  };
  return { w1: mat('w1'), w2: mat('w2'), w3: mat('w3') };
}

/** Expert 0 of layer 0 with `synthExpertWeights`, as the family's expert graph reads it. */
function synthExpertSource(shape: ExpertShape, seed: number): TensorSource {
  const config = expertBenchConfig(shape);
  const names = familyOf(config).tensorNames.expert(0, 0);
  const roleOf = new Map<string, ExpertRole>(
    (Object.keys(names) as ExpertRole[]).map((role) => [names[role], role]),
  );
  let weights: Record<ExpertRole, F32Tensor> | undefined;
  const source: TensorSource = {
    config,
    has: (name) => roleOf.has(name),
    read: (name, expectShape) => source.readF32(name, expectShape),
    async readF32(name, expectShape) {
      const role = roleOf.get(name);
      if (role === undefined)
        throw new ExpertBenchError(`bench expert: no synthetic tensor ${name}`, {
          details: { tensor: name },
        });
      weights ??= synthExpertWeights(shape, seed);
      const t = weights[role];
      if (expectShape !== undefined && expectShape.join(',') !== t.shape.join(','))
        throw new ExpertBenchError(`bench expert: ${name} is [${t.shape}], expected [${expectShape}]`, {
          details: { tensor: name },
        });
      return t;
    },
  };
  return source;
}

export async function runExpertBench(opts: ExpertBenchOptions): Promise<ExpertBenchResult> {
  const { shape, settings } = opts;
  const say = opts.onProgress ?? (() => {});

  say(`GEMM peak: [${opts.peakGemm.m}, ${opts.peakGemm.k}] x [${opts.peakGemm.k}, ${opts.peakGemm.n}] fp32`);
  const peak = measurePeak(opts);
  say(`memory bandwidth: ReduceSum over ${(opts.bandwidthBytes / 2 ** 20).toFixed(0)} MiB`);
  const bandwidth = measureBandwidth(opts);

  const family = modelFamily(BENCH_MODEL_TYPE);
  const points: ExpertPoint[] = [];
  for (const format of opts.formats) {
    say(`${format} expert ${shape.hidden} x ${shape.ffn}: building the graph`);
    let session: Session;
    {
      // Scoped so the fp32 weights and serialized graph can be collected before timing starts.
      requireWeightFormatOnDevice(format, settings.device);
      const graph = await family.expertGraph(synthExpertSource(shape, opts.seed), 0, 0, format);
      session = Session.create(`bench expert ${format}`, 'expert', graph, {
        ...settings,
        expertWeights: format,
      });
    }
    try {
      for (const batch of opts.batches) {
        const x = randomInput(batch * shape.hidden, batch);
        const feeds = {
          x: f32Input(x, [batch, shape.hidden]),
          weight: f32Input(new Float32Array(batch).fill(1), [batch, 1]),
        };
        const seconds = timeCalls(() => session.run(feeds), opts.secondsPerPoint);
        const gflopPerSecond = expertFlops(shape, batch) / seconds / 1e9;
        const weightBytes = expertWeightBytes(shape, format);
        const weightGBPerSecond = weightBytes / seconds / 1e9;
        points.push({
          format,
          batch,
          seconds,
          tokensPerSecond: batch / seconds,
          gflopPerSecond,
          fractionOfPeak: gflopPerSecond / peak.gflopPerSecond,
          weightBytes,
          weightGBPerSecond,
          fractionOfBandwidth: weightGBPerSecond / bandwidth.gbPerSecond,
        });
        say(
          `${format} batch ${batch}: ${(batch / seconds).toFixed(1)} tokens/s, ${gflopPerSecond.toFixed(1)} GFLOP/s`,
        );
      }
    } finally {
      session.release();
    }
  }
  return { shape, peak, bandwidth, points };
}

function measurePeak(opts: ExpertBenchOptions): ExpertBenchResult['peak'] {
  const { m, k, n } = opts.peakGemm;
  const g = new GraphBuilder('bench_gemm_peak');
  const a = g.input('a', 'float32', [m, k]);
  const w = g.weight('w', { dtype: 'float32', shape: [k, n], data: randomInput(k * n, 1) });
  g.output(g.op('MatMul', [a, w]), 'y', 'float32', [m, n]);
  const session = Session.create('bench gemm peak', 'gemm', g.build(), {
    ...opts.settings,
    expertWeights: 'fp32',
  });
  try {
    const feeds = { a: f32Input(randomInput(m * k, 2), [m, k]) };
    const seconds = timeCalls(() => session.run(feeds), opts.secondsPerPoint);
    return { m, k, n, gflopPerSecond: (2 * m * k * n) / seconds / 1e9 };
  } finally {
    session.release();
  }
}

function measureBandwidth(opts: ExpertBenchOptions): ExpertBenchResult['bandwidth'] {
  const count = Math.floor(opts.bandwidthBytes / 4);
  const g = new GraphBuilder('bench_bandwidth');
  const x = g.input('x', 'float32', [count]);
  // An input, not an initializer: constant folding would compute the sum once at load.
  g.output(g.op('ReduceSum', [x], { keepdims: 0 }), 'sum', 'float32', []);
  const session = Session.create('bench bandwidth', 'bandwidth', g.build(), {
    ...opts.settings,
    expertWeights: 'fp32',
  });
  try {
    const feeds = { x: f32Input(randomInput(count, 3), [count]) };
    const seconds = timeCalls(() => session.run(feeds), opts.secondsPerPoint);
    return { bytes: count * 4, gbPerSecond: (count * 4) / seconds / 1e9 };
  } finally {
    session.release();
  }
}

/** Median seconds per call after WARMUP calls, over at least MIN_ITERS calls and `budget` seconds. */
function timeCalls(call: () => void, budget: number): number {
  for (let i = 0; i < WARMUP; i++) call();
  const samples: number[] = [];
  const until = performance.now() + budget * 1000;
  while (samples.length < MIN_ITERS || performance.now() < until) {
    const t = performance.now();
    call();
    samples.push((performance.now() - t) / 1000);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

/** Values in [-1, 1) from a fixed sequence: inputs whose magnitude is like a normalised hidden state. */
function randomInput(length: number, seed: number): Float32Array {
  const next = mulberry32(seed);
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = 2 * next() - 1;
  return out;
}
