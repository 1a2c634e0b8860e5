// Mixtral's config.json schema (transformers' MixtralConfig): validated once, checked for numbers
// that disagree with each other, and turned into the common camelCase ModelConfig.

import { z } from 'zod';
import {
  parseWithSchema,
  positiveInt,
  positiveNumber,
  tokenId,
  tokenIds,
  torchDtype,
} from '../config-schema.js';
import { FamilyConfigError, FamilyMismatchError } from '../errors.js';
import type { ModelConfig } from '../family.js';

export const MIXTRAL = 'mixtral';

/** Mixtral has no fields beyond the common ones. */
export interface MixtralConfig extends ModelConfig {
  readonly modelType: typeof MIXTRAL;
}

// Defaults are only taken where transformers' MixtralConfig documents one and the value cannot
// change which tensors exist or their shapes; every size must be stated.
const mixtralSchema = z.object({
  model_type: z.literal(MIXTRAL),
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  num_key_value_heads: positiveInt,
  // Newer transformers versions write "head_dim": null to mean hidden_size / num_attention_heads.
  head_dim: positiveInt.nullish(),
  num_local_experts: positiveInt,
  num_experts_per_tok: positiveInt,
  vocab_size: positiveInt,
  rms_norm_eps: positiveNumber,
  // MixtralConfig's documented default rope_theta is 1e6 (unlike Llama's 1e4), so a config that
  // omits it means 1e6.
  rope_theta: positiveNumber.default(1e6),
  max_position_embeddings: positiveInt,
  bos_token_id: tokenId,
  eos_token_id: tokenIds,
  // MixtralConfig defaults: untied embeddings, no sliding window.
  tie_word_embeddings: z.boolean({ error: 'expected true or false' }).default(false),
  sliding_window: positiveInt.nullish(),
  torch_dtype: torchDtype.optional(),
  // transformers >= 4.56 writes the same information as "dtype".
  dtype: torchDtype.optional(),
});

export function parseMixtralConfig(obj: Readonly<Record<string, unknown>>): MixtralConfig {
  const c = parseWithSchema(mixtralSchema, obj);

  const fail = (field: string, message: string): never => {
    throw new FamilyConfigError(message, field);
  };

  if (c.head_dim == null && c.hidden_size % c.num_attention_heads !== 0) {
    fail(
      'hidden_size',
      `hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}, ` +
        'so the head dimension is undefined (and config.json gives no head_dim)',
    );
  }
  if (c.num_attention_heads % c.num_key_value_heads !== 0) {
    fail(
      'num_key_value_heads',
      `num_attention_heads ${c.num_attention_heads} is not divisible by num_key_value_heads ` +
        `${c.num_key_value_heads}: grouped-query attention needs a whole number of query heads per key/value head`,
    );
  }
  if (c.num_experts_per_tok > c.num_local_experts) {
    fail(
      'num_experts_per_tok',
      `num_experts_per_tok ${c.num_experts_per_tok} exceeds num_local_experts ${c.num_local_experts}`,
    );
  }
  const eos = typeof c.eos_token_id === 'number' ? [c.eos_token_id] : c.eos_token_id;
  for (const [field, ids] of [
    ['bos_token_id', [c.bos_token_id]],
    ['eos_token_id', eos],
  ] as const) {
    for (const id of ids) {
      if (id >= c.vocab_size)
        fail(field, `${field} ${id} is outside the vocabulary (vocab_size ${c.vocab_size})`);
    }
  }

  return {
    modelType: MIXTRAL,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads: c.num_key_value_heads,
    headDim: c.head_dim ?? c.hidden_size / c.num_attention_heads,
    numExperts: c.num_local_experts,
    numExpertsPerTok: c.num_experts_per_tok,
    vocabSize: c.vocab_size,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: c.rope_theta,
    maxPositionEmbeddings: c.max_position_embeddings,
    bosTokenId: c.bos_token_id,
    eosTokenId: eos,
    tieWordEmbeddings: c.tie_word_embeddings,
    slidingWindow: c.sliding_window ?? null,
    torchDtype: c.torch_dtype ?? c.dtype ?? null,
  };
}

/** A config the Mixtral family parsed, typed as such. */
export function asMixtralConfig(config: ModelConfig): MixtralConfig {
  if (config.modelType !== MIXTRAL) throw new FamilyMismatchError(MIXTRAL, config.modelType);
  return config as MixtralConfig;
}
