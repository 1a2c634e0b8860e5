// How expert FFN weights are stored and computed in a process: `fp32` (the checkpoint's bf16
// widened; matches the reference within 1e-5, the default), `bf16` (the checkpoint's 16 bits kept
// in memory, GEMMs in bf16 with fp32 accumulation: `--device cuda` only, onnxruntime's CPU provider
// has no bf16 MatMul), `int8` (blockwise 8-bit weights and int8 GEMMs: single-token expert calls
// about 3x faster on CPU, expert outputs within ~2e-2 relative of fp32) or `int4` (blockwise 4-bit
// weights, a quarter of bf16's memory plus scales). int8/int4 are opt-in and approximate; their
// perplexity cost on the demo model is in docs/scale.md.

import { WeightFormatDeviceError } from './errors.js';
import { INT4_BLOCK } from './int4-weights.js';
import { INT8_BLOCK } from './int8-weights.js';
import type { Device } from './session.js';

export type ExpertWeightFormat = 'fp32' | 'bf16' | 'int8' | 'int4';
export const EXPERT_WEIGHT_FORMATS: readonly ExpertWeightFormat[] = ['fp32', 'bf16', 'int8', 'int4'];
/** The formats onnxruntime's CPU provider computes in (see requireWeightFormatOnDevice). */
export const CPU_EXPERT_WEIGHT_FORMATS: readonly ExpertWeightFormat[] = ['fp32', 'int8', 'int4'];

/** Bytes a weight takes in memory: int8/int4 are the code plus its share of the block's fp32 scale. */
export const EXPERT_WEIGHT_BYTES: Readonly<Record<ExpertWeightFormat, number>> = {
  fp32: 4,
  bf16: 2,
  int8: 1 + 4 / INT8_BLOCK,
  int4: 0.5 + 4 / INT4_BLOCK,
};

/**
 * Refuses a format the device's execution provider cannot compute in. onnxruntime 1.30's CPU
 * provider has no bf16 MatMul kernel at all (a bf16 graph fails to load), and its fp16 MatMul is
 * a Cast to fp32 inserted by the runtime with the weight folded to fp32: 16-bit weights would be
 * widened in memory, which is what the format exists to avoid. kmoe never falls back silently.
 */
export function requireWeightFormatOnDevice(format: ExpertWeightFormat, device: Device): void {
  if (device === 'cpu' && !CPU_EXPERT_WEIGHT_FORMATS.includes(format)) {
    throw new WeightFormatDeviceError(format, device, CPU_EXPERT_WEIGHT_FORMATS);
  }
}

/**
 * How the dense layers' projections (attention, dense FFNs) and the LM head compute: `fp32` (the
 * default) or `int8` (the same blockwise 8-bit MatMulNBits as int8 experts, applied to the built
 * graphs by quantize-graph.ts; router matmuls stay fp32). Opt-in and approximate.
 */
export type DenseWeightFormat = 'fp32' | 'int8';
export const DENSE_WEIGHT_FORMATS: readonly DenseWeightFormat[] = ['fp32', 'int8'];
