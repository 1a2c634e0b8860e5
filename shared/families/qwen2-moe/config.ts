// Qwen2-MoE's config.json schema (transformers' Qwen2MoeConfig; Qwen1.5-MoE, Qwen2-57B-A14B):
// validated, checked for numbers that disagree, and turned into ModelConfig plus its own fields
// (shared expert, dense layers, q/k/v biases).

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

export const QWEN2_MOE = 'qwen2_moe';

export interface Qwen2MoeConfig extends ModelConfig {
  readonly modelType: typeof QWEN2_MOE;
  /** FFN size of a dense (mlp_only / sparse-step) layer: config.json `intermediate_size`. */
  readonly denseIntermediateSize: number;
  /** FFN size of the shared expert; 0 = none. */
  readonly sharedExpertIntermediateSize: number;
  /** Whether the native top-K weights are renormalised (`norm_topk_prob`). */
  readonly normTopkProb: boolean;
  readonly qkvBias: boolean;
  /** Which decoder layers are MoE (the rest are dense), from decoder_sparse_step and mlp_only_layers. */
  readonly moeLayers: readonly boolean[];
  /** 'default' unless config.json asks for a RoPE scaling, which the graphs refuse. */
  readonly ropeType: string;
}

// Defaults only where Qwen2MoeConfig documents one and it cannot change which tensors exist.
const schema = z.object({
  model_type: z.literal(QWEN2_MOE),
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  moe_intermediate_size: positiveInt,
  shared_expert_intermediate_size: z.int({ error: 'expected an integer >= 0' }).nonnegative().default(0),
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  num_key_value_heads: positiveInt,
  head_dim: positiveInt.nullish(),
  num_experts: positiveInt,
  num_experts_per_tok: positiveInt,
  ...qwenMoeLayerFields,
  qkv_bias: bool.default(true),
  ...vocabRopeTokenFields,
  ...slidingWindowFields,
  ...dtypeFields,
});

export function parseQwen2MoeConfig(obj: Readonly<Record<string, unknown>>): Qwen2MoeConfig {
  const c = parseWithSchema(schema, obj);
  const fail = (field: string, message: string): never => {
    throw new FamilyConfigError(message, field);
  };
  const eos = checkCommonFields(c, fail);
  const headDim = qwenHeadDim(c, fail);
  if (c.num_experts_per_tok > c.num_experts) {
    fail(
      'num_experts_per_tok',
      `num_experts_per_tok ${c.num_experts_per_tok} exceeds num_experts ${c.num_experts}`,
    );
  }
  const moeLayers = qwenMoeLayers(c, fail);
  return {
    modelType: QWEN2_MOE,
    hiddenSize: c.hidden_size,
    intermediateSize: c.moe_intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads: c.num_key_value_heads,
    headDim,
    numExperts: c.num_experts,
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
    sharedExpertIntermediateSize: c.shared_expert_intermediate_size,
    normTopkProb: c.norm_topk_prob,
    qkvBias: c.qkv_bias,
    moeLayers,
    ropeType: ropeTypeOf(c.rope_scaling, c.rope_parameters),
  };
}

export function asQwen2MoeConfig(config: ModelConfig): Qwen2MoeConfig {
  if (config.modelType !== QWEN2_MOE) throw new FamilyMismatchError(QWEN2_MOE, config.modelType);
  return config as Qwen2MoeConfig;
}
