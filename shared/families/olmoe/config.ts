// OLMoE's config.json schema (transformers' OlmoeConfig; OLMoE-1B-7B): validated, checked for
// numbers that disagree, and turned into ModelConfig plus its own fields. OLMoE's
// `intermediate_size` is the per-expert FFN size; every layer is an MoE layer.

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

export const OLMOE = 'olmoe';

export interface OlmoeConfig extends ModelConfig {
  readonly modelType: typeof OLMOE;
  readonly normTopkProb: boolean;
  /** Clamp of q, k, v to [-clipQkv, clipQkv] after the projections; null = none. */
  readonly clipQkv: number | null;
  readonly ropeType: string;
}

const schema = z.object({
  model_type: z.literal(OLMOE),
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  num_key_value_heads: positiveInt,
  num_experts: positiveInt,
  num_experts_per_tok: positiveInt,
  norm_topk_prob: bool.default(false),
  clip_qkv: positiveNumber.nullish(),
  attention_bias: bool.default(false),
  ...vocabRopeTokenFields,
  // Absent from allenai's published OLMoE-1B-7B-0924 config.json files: transformers' OlmoeConfig
  // default (rms_norm_eps = 1e-05) applies, so kmoe applies it too.
  rms_norm_eps: positiveNumber.default(1e-5),
  ...dtypeFields,
});

export function parseOlmoeConfig(obj: Readonly<Record<string, unknown>>): OlmoeConfig {
  const c = parseWithSchema(schema, obj);
  const fail = (field: string, message: string): never => {
    throw new FamilyConfigError(message, field);
  };
  const eos = checkCommonFields(c, fail);
  if (c.hidden_size % c.num_attention_heads !== 0) {
    fail(
      'hidden_size',
      `hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}, so the head dimension is undefined`,
    );
  }
  if (c.attention_bias)
    fail('attention_bias', 'attention_bias true (q/k/v/o biases) is not supported for olmoe');
  if (c.num_experts_per_tok > c.num_experts) {
    fail(
      'num_experts_per_tok',
      `num_experts_per_tok ${c.num_experts_per_tok} exceeds num_experts ${c.num_experts}`,
    );
  }
  return {
    modelType: OLMOE,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads: c.num_key_value_heads,
    headDim: c.hidden_size / c.num_attention_heads,
    numExperts: c.num_experts,
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
    normTopkProb: c.norm_topk_prob,
    clipQkv: c.clip_qkv ?? null,
    ropeType: ropeTypeOf(c.rope_scaling, c.rope_parameters),
  };
}

export function asOlmoeConfig(config: ModelConfig): OlmoeConfig {
  if (config.modelType !== OLMOE) throw new FamilyMismatchError(OLMOE, config.modelType);
  return config as OlmoeConfig;
}
