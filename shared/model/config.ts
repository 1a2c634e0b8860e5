// Reads a Hugging Face config.json, validates it once with a schema and checks that its numbers
// agree with each other, and hands the rest of kmoe a typed camelCase ModelConfig.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { ModelConfigError } from '../errors/model-config-error.js';
import { isSupportedModelType, type ModelType, SUPPORTED_MODEL_TYPES } from './architecture.js';

/** The dtype the checkpoint was saved in, as config.json states it (informational: tensors carry their own). */
export type TorchDtype = 'bfloat16' | 'float16' | 'float32';

export interface ModelConfig {
  readonly modelType: ModelType;
  readonly hiddenSize: number;
  /** Hidden size of one expert's FFN. */
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  /** Experts per MoE layer (`num_local_experts`). */
  readonly numExperts: number;
  /** The K of top-K routing the model was trained with. */
  readonly numExpertsPerTok: number;
  readonly vocabSize: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly maxPositionEmbeddings: number;
  readonly bosTokenId: number;
  readonly eosTokenId: readonly number[];
  readonly tieWordEmbeddings: boolean;
  /** Sliding-window attention span, or null for full attention. */
  readonly slidingWindow: number | null;
  /** Null when config.json does not say. */
  readonly torchDtype: TorchDtype | null;
}

export const CONFIG_FILE_NAME = 'config.json';

const POSITIVE_INT = 'expected an integer >= 1';
const positiveInt = z.int({ error: POSITIVE_INT }).positive({ error: POSITIVE_INT });
const tokenId = z.int({ error: 'expected a token id (integer >= 0)' }).nonnegative({
  error: 'expected a token id (integer >= 0)',
});
const torchDtype = z.enum(['bfloat16', 'float16', 'float32'], {
  error: 'expected one of bfloat16, float16, float32',
});

// Defaults are only taken where transformers' MixtralConfig documents one and the value cannot
// change which tensors exist or their shapes; every size must be stated.
const mixtralSchema = z.object({
  model_type: z.literal('mixtral'),
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
  rms_norm_eps: z.number({ error: 'expected a number > 0' }).positive({ error: 'expected a number > 0' }),
  // MixtralConfig's documented default rope_theta is 1e6 (unlike Llama's 1e4), so a config that
  // omits it means 1e6.
  rope_theta: z
    .number({ error: 'expected a number > 0' })
    .positive({ error: 'expected a number > 0' })
    .default(1e6),
  max_position_embeddings: positiveInt,
  bos_token_id: tokenId,
  eos_token_id: z.union([tokenId, z.array(tokenId).min(1, { error: 'expected at least one token id' })], {
    error: 'expected a token id or a non-empty list of token ids',
  }),
  // MixtralConfig defaults: untied embeddings, no sliding window.
  tie_word_embeddings: z.boolean({ error: 'expected true or false' }).default(false),
  sliding_window: positiveInt.nullish(),
  torch_dtype: torchDtype.optional(),
  // transformers >= 4.56 writes the same information as "dtype".
  dtype: torchDtype.optional(),
});

type ConfigParser = (obj: Record<string, unknown>, source: string) => ModelConfig;

const PARSERS: Readonly<Record<ModelType, ConfigParser>> = {
  mixtral: parseMixtral,
};

/**
 * Validates a parsed config.json. `source` names where it came from (normally the file path)
 * so that every error can say which file is wrong.
 */
export function parseModelConfig(json: unknown, source: string): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelConfigError(`${source}: expected a JSON object, got ${describe(json)}`, { file: source });
  }
  const obj = json as Record<string, unknown>;
  const modelType = obj['model_type'];
  if (modelType === undefined) {
    throw new ModelConfigError(`${source}: missing required field "model_type"`, {
      file: source,
      field: 'model_type',
      hint: `kmoe supports model_type ${supportedList()}`,
    });
  }
  if (typeof modelType !== 'string' || !isSupportedModelType(modelType)) {
    throw new ModelConfigError(
      `${source}: field "model_type" is ${JSON.stringify(modelType)}, which kmoe does not support ` +
        `(supported model types: ${supportedList()})`,
      { file: source, field: 'model_type' },
    );
  }
  return PARSERS[modelType](obj, source);
}

/** Reads and validates `<dir>/config.json`. */
export async function loadModelConfig(dir: string): Promise<ModelConfig> {
  return (await readModelConfigFile(dir)).config;
}

/**
 * Like loadModelConfig, but also returns the JSON exactly as parsed, for callers that need the
 * fields kmoe does not model (the checkpoint fingerprint covers the whole file).
 */
export async function readModelConfigFile(
  dir: string,
): Promise<{ config: ModelConfig; raw: unknown; file: string }> {
  const file = path.join(dir, CONFIG_FILE_NAME);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ModelConfigError(`${file}: cannot read the model config (${errorMessage(err)})`, {
      file,
      hint: 'point kmoe at a Hugging Face checkpoint directory (config.json next to the *.safetensors files)',
      cause: err,
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ModelConfigError(`${file}: not valid JSON (${errorMessage(err)})`, { file, cause: err });
  }
  return { config: parseModelConfig(raw, file), raw, file };
}

function parseMixtral(obj: Record<string, unknown>, source: string): ModelConfig {
  const result = mixtralSchema.safeParse(obj);
  if (!result.success) throw schemaError(result.error, obj, source);
  const c = result.data;

  const fail = (field: string, message: string): never => {
    throw new ModelConfigError(`${source}: ${message}`, { file: source, field });
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
    modelType: 'mixtral',
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

/** One error for all schema issues, named after the first offending field. */
function schemaError(error: z.ZodError, obj: Record<string, unknown>, source: string): ModelConfigError {
  const problems = error.issues.map((issue) => {
    const field = issue.path.map(String).join('.');
    const value = valueAt(obj, issue.path);
    if (value === undefined && issue.path.length === 1) return `missing required field "${field}"`;
    return `field "${field}": ${issue.message}, got ${describe(value)}`;
  });
  const first = error.issues[0]?.path[0];
  return new ModelConfigError(`${source}: ${problems.join('; ')}`, {
    file: source,
    ...(first === undefined ? {} : { field: String(first) }),
  });
}

function valueAt(obj: unknown, keys: readonly PropertyKey[]): unknown {
  let cur = obj;
  for (const key of keys) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function supportedList(): string {
  return SUPPORTED_MODEL_TYPES.map((t) => `"${t}"`).join(', ');
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
