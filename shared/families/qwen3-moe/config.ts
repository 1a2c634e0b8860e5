// Qwen3-MoE's config.json schema (transformers' Qwen3MoeConfig; Qwen3-30B-A3B, Qwen3-235B-A22B):
// validated, checked for numbers that disagree, and turned into ModelConfig plus its own fields
// (dense layers, renormalisation).

import { z } from 'zod';
import {
  bool,
  checkCommonFields,
  dtypeFields,
  parseWithSchema,
  positiveInt,
  ropeTypeOf,
  slidingWindowFields,
  vocabRopeTokenFields,
} from '../config-schema.js';
import { FamilyConfigError, FamilyMismatchError } from '../errors.js';
import type { ModelConfig } from '../family.js';
import { qwenHeadDim, qwenMoeLayerFields, qwenMoeLayers } from '../qwen-layers.js';

export const QWEN3_MOE = 'qwen3_moe';

export interface Qwen3MoeConfig extends ModelConfig {
  readonly modelType: typeof QWEN3_MOE;
  /** FFN size of a dense (mlp_only / sparse-step) layer: config.json `intermediate_size`. */
  readonly denseIntermediateSize: number;
  /** Whether the native top-K weights are renormalised (`norm_topk_prob`). */
  readonly normTopkProb: boolean;
  /** Which decoder layers are MoE (the rest are dense), from decoder_sparse_step and mlp_only_layers. */
  readonly moeLayers: readonly boolean[];
  /** 'default' unless config.json asks for a RoPE scaling, which the graphs refuse. */
  readonly ropeType: string;
}

// Defaults only where Qwen3MoeConfig documents one and it cannot change which tensors exist.
const schema = z.object({
  model_type: z.literal(QWEN3_MOE),
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  moe_intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  num_key_value_heads: positiveInt,
  head_dim: positiveInt.nullish(),
  // 4.x configs say num_experts; transformers 5 writes num_local_experts (the tiny model has both).
  num_experts: positiveInt.optional(),
  num_local_experts: positiveInt.optional(),
  num_experts_per_tok: positiveInt,
  ...qwenMoeLayerFields,
  // Qwen3MoeConfig default false; q/k/v/o biases are not in the tensor table, so true is refused.
  attention_bias: bool.default(false),
  ...vocabRopeTokenFields,
  ...slidingWindowFields,
  ...dtypeFields,
});

export function parseQwen3MoeConfig(obj: Readonly<Record<string, unknown>>): Qwen3MoeConfig {
  const c = parseWithSchema(schema, obj);
  const fail = (field: string, message: string): never => {
    throw new FamilyConfigError(message, field);
  };
  const eos = checkCommonFields(c, fail);
  const headDim = qwenHeadDim(c, fail);
  if (c.attention_bias)
    fail('attention_bias', 'attention_bias true (q/k/v/o biases) is not supported for qwen3_moe');
  if (
    c.num_experts !== undefined &&
    c.num_local_experts !== undefined &&
    c.num_experts !== c.num_local_experts
  ) {
    fail(
      'num_local_experts',
      `num_local_experts ${c.num_local_experts} disagrees with num_experts ${c.num_experts}`,
    );
  }
  const numExperts =
    c.num_experts ?? c.num_local_experts ?? fail('num_experts', 'missing required field "num_experts"');
  if (c.num_experts_per_tok > numExperts) {
    fail(
      'num_experts_per_tok',
      `num_experts_per_tok ${c.num_experts_per_tok} exceeds num_experts ${numExperts}`,
    );
  }
  const moeLayers = qwenMoeLayers(c, fail);
  return {
    modelType: QWEN3_MOE,
    hiddenSize: c.hidden_size,
    intermediateSize: c.moe_intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads: c.num_key_value_heads,
    headDim,
    numExperts,
    numExpertsPerTok: c.num_experts_per_tok,
    vocabSize: c.vocab_size,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: c.rope_theta ?? c.rope_parameters?.rope_theta ?? 10000,
    maxPositionEmbeddings: c.max_position_embeddings,
    bosTokenId: c.bos_token_id ?? null,
    eosTokenId: eos,
    tieWordEmbeddings: c.tie_word_embeddings,
    slidingWindow: c.use_sliding_window && c.sliding_window ? c.sliding_window : null,
    torchDtype: c.torch_dtype ?? c.dtype ?? null,
    denseIntermediateSize: c.intermediate_size,
    normTopkProb: c.norm_topk_prob,
    moeLayers,
    ropeType: ropeTypeOf(c.rope_scaling, c.rope_parameters),
  };
}

export function asQwen3MoeConfig(config: ModelConfig): Qwen3MoeConfig {
  if (config.modelType !== QWEN3_MOE) throw new FamilyMismatchError(QWEN3_MOE, config.modelType);
  return config as Qwen3MoeConfig;
}
