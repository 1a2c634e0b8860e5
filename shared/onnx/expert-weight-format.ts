// How expert FFN weights are stored and computed in a process: `fp32` (the checkpoint's bf16
// widened; matches the reference within 1e-5, the default) or `int8` (blockwise 8-bit weights and
// int8 GEMMs: single-token expert calls about 3x faster on CPU, expert outputs within ~2e-2
// relative of fp32; opt-in, its perplexity cost is measured in the README).

import { INT8_BLOCK } from './int8-weights.js';

export type ExpertWeightFormat = 'fp32' | 'int8';
export const EXPERT_WEIGHT_FORMATS: readonly ExpertWeightFormat[] = ['fp32', 'int8'];

/** Bytes a weight takes in memory: int8 is one byte plus its share of the block's fp32 scale. */
export const EXPERT_WEIGHT_BYTES: Readonly<Record<ExpertWeightFormat, number>> = {
  fp32: 4,
  int8: 1 + 4 / INT8_BLOCK,
};

/**
 * How the dense layers' projections (attention, dense FFNs) and the LM head compute: `fp32` (the
 * default) or `int8` (the same blockwise 8-bit MatMulNBits as int8 experts, applied to the built
 * graphs by quantize-graph.ts; router matmuls stay fp32). Opt-in and approximate.
 */
export type DenseWeightFormat = 'fp32' | 'int8';
export const DENSE_WEIGHT_FORMATS: readonly DenseWeightFormat[] = ['fp32', 'int8'];
