// Learned linear substitutes of experts, as stored in a routing profile: for each (MoE layer,
// expert) a rank-r affine map of the expert's input row x (the post-attention-norm hidden state)
// that estimates the expert's output, y ~ up (down x) + bias. A skip policy adds native weight x
// substitute(x) for every expert it leaves out, instead of native weight x the expert's mean output:
// on the demo model a rank-32 substitute fitted on calibration text removes about half of the error
// the mean leaves, at 2 r hidden multiply-adds per skipped pair (rank 32: 4% of an expert's).

import { z } from 'zod';
import { decodeF32Base64, encodeF32Base64 } from './f32-base64.js';

export const expertSubstitutesSchema = z
  .object({
    encoding: z.literal('base64-f32le'),
    /** [layers, experts, rank, hidden] */
    shape: z.tuple([
      z.number().int().min(1),
      z.number().int().min(1),
      z.number().int().min(1),
      z.number().int().min(1),
    ]),
    /** [layers, experts, rank, hidden]: z = down x. */
    down: z.string(),
    /** [layers, experts, hidden, rank]: y = up z + bias. */
    up: z.string(),
    /** [layers, experts, hidden] */
    bias: z.string(),
  })
  .strict();

export type ExpertSubstitutesJSON = z.infer<typeof expertSubstitutesSchema>;

export interface ExpertSubstitutes {
  readonly layers: number;
  readonly experts: number;
  readonly rank: number;
  readonly hidden: number;
  /** [layers, experts, rank, hidden] */
  readonly down: Float32Array;
  /** [layers, experts, hidden, rank] */
  readonly up: Float32Array;
  /** [layers, experts, hidden] */
  readonly bias: Float32Array;
}

export function encodeExpertSubstitutes(s: ExpertSubstitutes): ExpertSubstitutesJSON {
  return {
    encoding: 'base64-f32le',
    shape: [s.layers, s.experts, s.rank, s.hidden],
    down: encodeF32Base64(s.down),
    up: encodeF32Base64(s.up),
    bias: encodeF32Base64(s.bias),
  };
}

/** Decodes and checks sizes and finiteness; returns a problem string instead of throwing. */
export function decodeExpertSubstitutes(json: ExpertSubstitutesJSON): ExpertSubstitutes | string {
  const [layers, experts, rank, hidden] = json.shape;
  if (rank > hidden) return `expertSubstitutes rank ${rank} exceeds hidden size ${hidden}`;
  const maps = layers * experts * rank * hidden;
  const down = decodeF32Base64('expertSubstitutes.down', json.down, maps);
  if (typeof down === 'string') return down;
  const up = decodeF32Base64('expertSubstitutes.up', json.up, maps);
  if (typeof up === 'string') return up;
  const bias = decodeF32Base64('expertSubstitutes.bias', json.bias, layers * experts * hidden);
  if (typeof bias === 'string') return bias;
  return { layers, experts, rank, hidden, down, up, bias };
}

/**
 * Applies one MoE layer's substitutes to a batch at once: what a process that routes large batches
 * provides (the coordinator's engine runs them as one onnxruntime graph per layer: ~3 us per row
 * plus one call, against ~8-22 us per skipped pair in JS, see addSubstitute). Policies fall back
 * to addSubstitute pair by pair where none is given, and for batches too small to pay for a call.
 */
export interface SubstituteBatchKernel {
  /**
   * out[t] = sum over experts e of weights[t, e] x substitute(layer, e)(x[t]), for numTokens rows:
   * x is [numTokens, hidden], weights [numTokens, experts] (0 = not skipped), out [numTokens,
   * hidden] is overwritten.
   */
  apply(
    s: ExpertSubstitutes,
    layer: number,
    numTokens: number,
    x: Float32Array,
    weights: Float32Array,
    out: Float32Array,
  ): void;
  /** Readies the kernel for these tables (a policy calls it when it is created). */
  prepare(s: ExpertSubstitutes): void;
}

/**
 * out[outAt .. outAt + hidden) += weight x (up (down x) + bias) of (layer, expert), with x =
 * input[inAt .. inAt + hidden). `z` is scratch of at least `rank` values. Four partial sums per dot
 * product: V8 does not vectorise, and independent sums let it overlap the multiply-adds (about 1.4x
 * faster than one sum; still ~10 us per call at rank 32, hidden 256).
 */
export function addSubstitute(
  s: ExpertSubstitutes,
  layer: number,
  expert: number,
  weight: number,
  input: Float32Array,
  inAt: number,
  out: Float32Array,
  outAt: number,
  z: Float64Array,
): void {
  const { rank: R, hidden: H } = s;
  const le = layer * s.experts + expert;
  const down = s.down;
  const up = s.up;
  const d0 = le * R * H;
  for (let r = 0; r < R; r++) z[r] = dot(down, d0 + r * H, input, inAt, H);
  const u0 = le * H * R;
  const b0 = le * H;
  for (let i = 0; i < H; i++) {
    out[outAt + i]! += weight * (s.bias[b0 + i]! + dot(up, u0 + i * R, z, 0, R));
  }
}

/** a[aAt ..] . b[bAt ..] over n values, in four partial sums. */
function dot(a: Float32Array, aAt: number, b: Float32Array | Float64Array, bAt: number, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    s0 += a[aAt + i]! * b[bAt + i]!;
    s1 += a[aAt + i + 1]! * b[bAt + i + 1]!;
    s2 += a[aAt + i + 2]! * b[bAt + i + 2]!;
    s3 += a[aAt + i + 3]! * b[bAt + i + 3]!;
  }
  for (; i < n; i++) s0 += a[aAt + i]! * b[bAt + i]!;
  return s0 + s1 + (s2 + s3);
}
