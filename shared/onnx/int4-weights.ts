// Blockwise symmetric 4-bit quantization of a weight matrix in the layout com.microsoft
// MatMulNBits (bits=4) reads: W is [N, K]; each row is cut into blocks of `block` columns, each
// block stored as 4-bit codes packed two per byte (low nibble first along K) with one fp32 scale,
// and dequantizes to (code - 8) * scale. No zero_points input: MatMulNBits then uses the midpoint
// 8, and onnxruntime's MLAS has its fastest int8-compute kernels for this symmetric case; the
// scale is the block's value of largest magnitude divided by -8, so that value is exact and the
// whole code range -8..7 is used (what onnxruntime's own symmetric quantizer does).

import type { F32Tensor } from '../tensor.js';

export const INT4_BLOCK = 32;
/** MatMulNBits' implicit zero point for 4-bit weights without a zero_points input. */
const ZERO_POINT = 8;

export interface Int4BlockWeights {
  /** Output features (rows of W). */
  readonly n: number;
  /** Input features (columns of W). */
  readonly k: number;
  readonly block: number;
  /** [n, k / block, block / 2]: two codes per byte, the lower column in the low nibble. */
  readonly q: Uint8Array;
  /** [n * k / block] */
  readonly scales: Float32Array;
}

export function quantizeInt4Blockwise(w: F32Tensor, block = INT4_BLOCK): Int4BlockWeights {
  if (w.shape.length !== 2)
    throw new RangeError(`int4 quantization needs a matrix, got shape [${w.shape.join(', ')}]`);
  const [n, k] = w.shape as [number, number];
  if (block % 2 !== 0 || k % block !== 0) {
    throw new RangeError(
      `int4 quantization: ${k} input features are not a multiple of the block size ${block}`,
    );
  }
  const blocks = k / block;
  const q = new Uint8Array((n * k) / 2);
  const scales = new Float32Array(n * blocks);
  const d = w.data;
  for (let b = 0; b < n * blocks; b++) {
    const o = b * block;
    let extreme = 0;
    for (let i = 0; i < block; i++) {
      const v = d[o + i]!;
      if (!Number.isFinite(v))
        throw new RangeError(`int4 quantization: weight block ${b} holds a non-finite value`);
      if (Math.abs(v) > Math.abs(extreme)) extreme = v;
    }
    // An all-zero block gets scale 1 so that dequantization stays exact (0 * 1).
    const scale = extreme === 0 ? 1 : Math.fround(extreme / -8);
    scales[b] = scale;
    for (let i = 0; i < block; i += 2) {
      const lo = code(d[o + i]!, scale);
      const hi = code(d[o + i + 1]!, scale);
      q[(o + i) / 2] = lo | (hi << 4);
    }
  }
  return { n, k, block, q, scales };
}

function code(v: number, scale: number): number {
  return Math.min(15, Math.max(0, Math.round(v / scale) + ZERO_POINT));
}

/** The fp32 values the quantized weights stand for, [n, k]. */
export function dequantizeInt4Blockwise(w: Int4BlockWeights): Float32Array {
  const out = new Float32Array(w.n * w.k);
  for (let i = 0; i < out.length; i++) {
    const byte = w.q[i >> 1]!;
    const c = i & 1 ? byte >> 4 : byte & 0x0f;
    out[i] = (c - ZERO_POINT) * w.scales[Math.floor(i / w.block)]!;
  }
  return out;
}
