// The DeepSeek-V2 / V3 config.json schema (transformers' DeepseekV2Config / DeepseekV3Config): one
// schema for both model types, checked for numbers that disagree and for the routing rule each
// implements, and turned into ModelConfig plus the MLA, dense-layer and router fields.

import { z } from 'zod';
import {
  bool,
  checkCommonFields,
  dtypeFields,
  parseWithSchema,
  positiveInt,
  positiveNumber,
  ropeTypeOf,
  vocabRopeTokenFields,
} from '../config-schema.js';
import { FamilyConfigError, FamilyMismatchError } from '../errors.js';
import type { ModelConfig } from '../family.js';

export const DEEPSEEK_V3 = 'deepseek_v3';
export const DEEPSEEK_V2 = 'deepseek_v2';
export type DeepseekModelType = typeof DEEPSEEK_V3 | typeof DEEPSEEK_V2;

/**
 * ModelConfig fields as DeepSeek maps them: `intermediateSize` is moe_intermediate_size (a routed
 * expert), `numKvHeads` equals `numHeads` (MLA has no grouped-query attention), and `headDim` is
 * qk_rope_head_dim, the rotary width per head (config.json's own `head_dim`, as transformers names it).
 */
export interface DeepseekConfig extends ModelConfig {
  readonly modelType: DeepseekModelType;
  /** FFN size of a dense layer (config.json `intermediate_size`). */
  readonly denseIntermediateSize: number;
  /** Always-computed experts of an MoE layer; stored as one SwiGLU of nShared * moe_intermediate_size. */
  readonly nSharedExperts: number;
  /** Null: q is one projection (V2-Lite); else the q LoRA rank (q_a_proj, q_a_layernorm, q_b_proj). */
  readonly qLoraRank: number | null;
  readonly kvLoraRank: number;
  readonly qkNopeHeadDim: number;
  readonly qkRopeHeadDim: number;
  readonly vHeadDim: number;
  /** RoPE on interleaved pairs (DeepSeek's own layout) instead of rotate-half halves. */
  readonly ropeInterleave: boolean;
  readonly ropeType: string;
  readonly scoringFunc: 'softmax' | 'sigmoid';
  /** noaux_tc (V3: sigmoid + correction bias, groups scored by their two best), greedy, group_limited_greedy (V2). */
  readonly topkMethod: 'noaux_tc' | 'greedy' | 'group_limited_greedy';
  readonly nGroup: number;
  readonly topkGroup: number;
  readonly normTopkProb: boolean;
  readonly routedScalingFactor: number;
  /** Which decoder layers are MoE: first_k_dense_replace and moe_layer_freq. */
  readonly moeLayers: readonly boolean[];
}

const schema = z.object({
  model_type: z.enum([DEEPSEEK_V3, DEEPSEEK_V2], { error: 'expected "deepseek_v3" or "deepseek_v2"' }),
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  moe_intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  num_key_value_heads: positiveInt.optional(),
  n_routed_experts: positiveInt,
  n_shared_experts: z.int({ error: 'expected an integer >= 0' }).nonnegative().nullish(),
  num_experts_per_tok: positiveInt,
  first_k_dense_replace: z.int({ error: 'expected an integer >= 0' }).nonnegative().default(0),
  moe_layer_freq: positiveInt.default(1),
  q_lora_rank: positiveInt.nullish(),
  kv_lora_rank: positiveInt,
  qk_nope_head_dim: positiveInt,
  qk_rope_head_dim: positiveInt,
  v_head_dim: positiveInt,
  // transformers 5 writes these derived values too; checked against the others when present.
  qk_head_dim: positiveInt.optional(),
  head_dim: positiveInt.nullish(),
  scoring_func: z.enum(['softmax', 'sigmoid'], { error: 'expected "softmax" or "sigmoid"' }).optional(),
  topk_method: z
    .enum(['noaux_tc', 'greedy', 'group_limited_greedy'], {
      error: 'expected "noaux_tc", "greedy" or "group_limited_greedy"',
    })
    .optional(),
  n_group: positiveInt.nullish(),
  topk_group: positiveInt.nullish(),
  norm_topk_prob: bool.default(false),
  routed_scaling_factor: positiveNumber.default(1),
  attention_bias: bool.default(false),
  rope_interleave: bool.default(true),
  ...vocabRopeTokenFields,
  ...dtypeFields,
});

export function parseDeepseekConfig(obj: Readonly<Record<string, unknown>>): DeepseekConfig {
  const c = parseWithSchema(schema, obj);
  const fail = (field: string, message: string): never => {
    throw new FamilyConfigError(message, field);
  };
  const eos = checkCommonFields({ ...c, num_key_value_heads: c.num_attention_heads }, fail);
  const v3 = c.model_type === DEEPSEEK_V3;
  // What transformers implements for each model type (V3 always routes noaux_tc on sigmoid scores).
  const scoringFunc = c.scoring_func ?? (v3 ? 'sigmoid' : 'softmax');
  const topkMethod = c.topk_method ?? (v3 ? 'noaux_tc' : 'greedy');
  if (v3 && scoringFunc !== 'sigmoid')
    fail('scoring_func', `deepseek_v3 routes on sigmoid scores, got "${scoringFunc}"`);
  if (v3 && topkMethod !== 'noaux_tc')
    fail('topk_method', `deepseek_v3 routes with "noaux_tc", got "${topkMethod}"`);
  if (!v3 && scoringFunc !== 'softmax')
    fail('scoring_func', `deepseek_v2 routes on softmax scores, got "${scoringFunc}"`);
  if (!v3 && topkMethod === 'noaux_tc') fail('topk_method', 'deepseek_v2 has no "noaux_tc" routing');
  const nGroup = c.n_group ?? 1;
  const topkGroup = c.topk_group ?? 1;
  if (c.n_routed_experts % nGroup !== 0) {
    fail('n_group', `n_routed_experts ${c.n_routed_experts} is not divisible by n_group ${nGroup}`);
  }
  if (topkGroup > nGroup) fail('topk_group', `topk_group ${topkGroup} exceeds n_group ${nGroup}`);
  if (c.num_experts_per_tok > c.n_routed_experts) {
    fail(
      'num_experts_per_tok',
      `num_experts_per_tok ${c.num_experts_per_tok} exceeds n_routed_experts ${c.n_routed_experts}`,
    );
  }
  const grouped = topkMethod !== 'greedy' && nGroup > 1;
  if (grouped && c.num_experts_per_tok > (c.n_routed_experts / nGroup) * topkGroup) {
    fail(
      'num_experts_per_tok',
      `num_experts_per_tok ${c.num_experts_per_tok} exceeds the ${topkGroup} kept groups of ${c.n_routed_experts / nGroup} experts`,
    );
  }
  if (c.qk_head_dim !== undefined && c.qk_head_dim !== c.qk_nope_head_dim + c.qk_rope_head_dim) {
    fail(
      'qk_head_dim',
      `qk_head_dim ${c.qk_head_dim} is not qk_nope_head_dim ${c.qk_nope_head_dim} + qk_rope_head_dim ${c.qk_rope_head_dim}`,
    );
  }
  if (c.head_dim != null && c.head_dim !== c.qk_rope_head_dim) {
    fail(
      'head_dim',
      `head_dim ${c.head_dim} is not qk_rope_head_dim ${c.qk_rope_head_dim} (transformers' meaning)`,
    );
  }
  if (c.qk_rope_head_dim % 2 !== 0) fail('qk_rope_head_dim', `qk_rope_head_dim ${c.qk_rope_head_dim} is odd`);
  if (c.attention_bias) fail('attention_bias', 'attention_bias true is not supported for DeepSeek MLA');
  if (c.first_k_dense_replace > c.num_hidden_layers) {
    fail(
      'first_k_dense_replace',
      `first_k_dense_replace ${c.first_k_dense_replace} exceeds num_hidden_layers ${c.num_hidden_layers}`,
    );
  }
  const moeLayers = Array.from(
    { length: c.num_hidden_layers },
    (_, l) => l >= c.first_k_dense_replace && l % c.moe_layer_freq === 0,
  );
  return {
    modelType: c.model_type,
    hiddenSize: c.hidden_size,
    intermediateSize: c.moe_intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads: c.num_attention_heads,
    headDim: c.qk_rope_head_dim,
    numExperts: c.n_routed_experts,
    numExpertsPerTok: c.num_experts_per_tok,
    vocabSize: c.vocab_size,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: c.rope_theta ?? c.rope_parameters?.rope_theta ?? 10000,
    maxPositionEmbeddings: c.max_position_embeddings,
    bosTokenId: c.bos_token_id ?? null,
    eosTokenId: eos,
    tieWordEmbeddings: c.tie_word_embeddings,
    slidingWindow: null,
    torchDtype: c.torch_dtype ?? c.dtype ?? null,
    denseIntermediateSize: c.intermediate_size,
    nSharedExperts: c.n_shared_experts ?? 0,
    qLoraRank: c.q_lora_rank ?? null,
    kvLoraRank: c.kv_lora_rank,
    qkNopeHeadDim: c.qk_nope_head_dim,
    qkRopeHeadDim: c.qk_rope_head_dim,
    vHeadDim: c.v_head_dim,
    ropeInterleave: c.rope_interleave,
    ropeType: ropeTypeOf(c.rope_scaling, c.rope_parameters),
    scoringFunc,
    topkMethod,
    nGroup,
    topkGroup,
    normTopkProb: c.norm_topk_prob,
    routedScalingFactor: c.routed_scaling_factor,
    moeLayers,
  };
}

/** A config parsed as `modelType` by the DeepSeek module, typed as such. */
export function asDeepseekConfig(config: ModelConfig, modelType: DeepseekModelType): DeepseekConfig {
  if (config.modelType !== modelType) throw new FamilyMismatchError(modelType, config.modelType);
  return config as DeepseekConfig;
}
