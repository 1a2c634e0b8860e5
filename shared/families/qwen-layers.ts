// What Qwen2-MoE and Qwen3-MoE configs share beyond the common fields: an optional explicit head_dim,
// and the choice of MoE layers by decoder_sparse_step and mlp_only_layers (transformers' rule).

import { z } from 'zod';
import { bool, positiveInt } from './config-schema.js';

/** Schema fields for the MoE layer choice and renormalisation, in the order both schemas list them. */
export const qwenMoeLayerFields = {
  norm_topk_prob: bool.default(false),
  decoder_sparse_step: positiveInt.default(1),
  mlp_only_layers: z.array(z.int().nonnegative(), { error: 'expected a list of layer indices' }).default([]),
};

type Fail = (field: string, message: string) => never;

/** head_dim, or hidden_size / num_attention_heads when config.json gives none (must be whole). */
export function qwenHeadDim(
  c: {
    readonly head_dim?: number | null | undefined;
    readonly hidden_size: number;
    readonly num_attention_heads: number;
  },
  fail: Fail,
): number {
  const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(headDim)) {
    fail(
      'hidden_size',
      `hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}, ` +
        'so the head dimension is undefined (and config.json gives no head_dim)',
    );
  }
  return headDim;
}

/** Which decoder layers are MoE: not in mlp_only_layers (checked to name real layers) and on the sparse step. */
export function qwenMoeLayers(
  c: {
    readonly num_hidden_layers: number;
    readonly mlp_only_layers: readonly number[];
    readonly decoder_sparse_step: number;
  },
  fail: Fail,
): boolean[] {
  for (const l of c.mlp_only_layers) {
    if (l >= c.num_hidden_layers) {
      fail(
        'mlp_only_layers',
        `mlp_only_layers names layer ${l}, but there are ${c.num_hidden_layers} layers`,
      );
    }
  }
  return Array.from(
    { length: c.num_hidden_layers },
    (_, l) => !c.mlp_only_layers.includes(l) && (l + 1) % c.decoder_sparse_step === 0,
  );
}
