// Blockwise symmetric 8-bit quantization of a weight matrix in the layout com.microsoft
// MatMulNBits reads: W is [N, K] (output rows, input columns, as Hugging Face stores linear
// layers); each row is cut into blocks of `block` columns, each block stored as uint8 q with one
// fp32 scale, and dequantizes to (q - 128) * scale.

import type { F32Tensor } from '../tensor.js';

export const INT8_BLOCK = 32;
/** MatMulNBits' implicit zero point for 8-bit weights without a zero_points input. */
const ZERO_POINT = 128;

export interface Int8BlockWeights {
  /** Output features (rows of W). */
  readonly n: number;
  /** Input features (columns of W). */
  readonly k: number;
  readonly block: number;
  /** [n, k / block, block] */
  readonly q: Uint8Array;
  /** [n * k / block] */
  readonly scales: Float32Array;
}

export function quantizeInt8Blockwise(w: F32Tensor, block = INT8_BLOCK): Int8BlockWeights {
  if (w.shape.length !== 2)
    throw new RangeError(`int8 quantization needs a matrix, got shape [${w.shape.join(', ')}]`);
  const [n, k] = w.shape as [number, number];
  if (k % block !== 0) {
    throw new RangeError(
      `int8 quantization: ${k} input features are not a multiple of the block size ${block}`,
    );
  }
  const blocks = k / block;
  const q = new Uint8Array(n * k);
  const scales = new Float32Array(n * blocks);
  const d = w.data;
  for (let b = 0; b < n * blocks; b++) {
    const o = b * block;
    let max = 0;
    for (let i = 0; i < block; i++) max = Math.max(max, Math.abs(d[o + i]!));
    if (!Number.isFinite(max))
      throw new RangeError(`int8 quantization: weight block ${b} holds a non-finite value`);
    // An all-zero block gets scale 1 so that dequantization stays exact (0 * 1).
    const scale = max === 0 ? 1 : max / 127;
    scales[b] = scale;
    for (let i = 0; i < block; i++) q[o + i] = Math.round(d[o + i]! / scale) + ZERO_POINT;
  }
  return { n, k, block, q, scales };
}

/** The fp32 values the quantized weights stand for, [n, k]. */
export function dequantizeInt8Blockwise(w: Int8BlockWeights): Float32Array {
  const out = new Float32Array(w.n * w.k);
  for (let i = 0; i < out.length; i++) out[i] = (w.q[i]! - ZERO_POINT) * w.scales[Math.floor(i / w.block)]!;
  return out;
}
