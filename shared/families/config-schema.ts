// Building blocks for the families' config.json schemas (zod), and the one place that turns schema
// issues into a FamilyConfigError naming the first offending field and quoting every bad value.

import { z } from 'zod';
import { FamilyConfigError } from './errors.js';

const POSITIVE_INT = 'expected an integer >= 1';
export const positiveInt = z.int({ error: POSITIVE_INT }).positive({ error: POSITIVE_INT });
export const positiveNumber = z
  .number({ error: 'expected a number > 0' })
  .positive({ error: 'expected a number > 0' });
export const tokenId = z.int({ error: 'expected a token id (integer >= 0)' }).nonnegative({
  error: 'expected a token id (integer >= 0)',
});
export const tokenIds = z.union(
  [tokenId, z.array(tokenId).min(1, { error: 'expected at least one token id' })],
  {
    error: 'expected a token id or a non-empty list of token ids',
  },
);
export const torchDtype = z.enum(['bfloat16', 'float16', 'float32'], {
  error: 'expected one of bfloat16, float16, float32',
});
export const bool = z.boolean({ error: 'expected true or false' });

/** Parses `obj` with `schema`; all issues become one FamilyConfigError, blamed on the first field. */
export function parseWithSchema<S extends z.ZodType>(
  schema: S,
  obj: Readonly<Record<string, unknown>>,
): z.output<S> {
  const result = schema.safeParse(obj);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const field = issue.path.map(String).join('.');
    const value = valueAt(obj, issue.path);
    if (value === undefined && issue.path.length === 1) return `missing required field "${field}"`;
    return `field "${field}": ${issue.message}, got ${describeValue(value)}`;
  });
  const first = result.error.issues[0]?.path[0];
  throw new FamilyConfigError(problems.join('; '), first === undefined ? undefined : String(first));
}

/** A value as error messages quote it (`nothing` for undefined, JSON cut to 80 characters). */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function valueAt(obj: unknown, keys: readonly PropertyKey[]): unknown {
  let cur = obj;
  for (const key of keys) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

/**
 * `rope_parameters` as transformers >= 5 writes it (the top-level `rope_theta` of 4.x configs is
 * read beside it). Only the default (unscaled) RoPE is computed by kmoe's graphs; other types are
 * parsed so configs validate, and refused when graphs are built.
 */
export const ropeParameters = z
  .object({
    rope_theta: positiveNumber.optional(),
    rope_type: z.string({ error: 'expected a string' }).optional(),
  })
  .loose();

/** `rope_scaling` of 4.x configs: null, or an object naming its `type` / `rope_type`. */
export const ropeScaling = z
  .object({
    type: z.string({ error: 'expected a string' }).optional(),
    rope_type: z.string({ error: 'expected a string' }).optional(),
  })
  .loose()
  .nullish();

/** The RoPE variant a config asks for: 'default' (plain), or the scaling type it names (e.g. 'yarn'). */
export function ropeTypeOf(
  scaling: { type?: string | undefined; rope_type?: string | undefined } | null | undefined,
  parameters: { rope_type?: string | undefined } | undefined,
): string {
  return scaling?.rope_type ?? scaling?.type ?? parameters?.rope_type ?? 'default';
}

/** Common consistency checks on attention and token-id fields; `fail` names the field. */
export function checkCommonFields(
  c: {
    readonly num_attention_heads: number;
    readonly num_key_value_heads: number;
    readonly vocab_size: number;
    readonly bos_token_id?: number | null | undefined;
    readonly eos_token_id: number | readonly number[];
  },
  fail: (field: string, message: string) => never,
): number[] {
  if (c.num_attention_heads % c.num_key_value_heads !== 0) {
    fail(
      'num_key_value_heads',
      `num_attention_heads ${c.num_attention_heads} is not divisible by num_key_value_heads ` +
        `${c.num_key_value_heads}: grouped-query attention needs a whole number of query heads per key/value head`,
    );
  }
  const eos = typeof c.eos_token_id === 'number' ? [c.eos_token_id] : [...c.eos_token_id];
  const bos = c.bos_token_id == null ? [] : [c.bos_token_id];
  for (const [field, ids] of [
    ['bos_token_id', bos],
    ['eos_token_id', eos],
  ] as const) {
    for (const id of ids) {
      if (id >= c.vocab_size)
        fail(field, `${field} ${id} is outside the vocabulary (vocab_size ${c.vocab_size})`);
    }
  }
  return eos;
}

/**
 * Fields every family after Mixtral reads alike, in the order the schemas list them (issues are
 * reported in key order, so a schema spreads these where the fields stand): vocabulary, norm, RoPE,
 * context, special tokens, tied embeddings.
 */
export const vocabRopeTokenFields = {
  vocab_size: positiveInt,
  rms_norm_eps: positiveNumber,
  rope_theta: positiveNumber.optional(),
  rope_parameters: ropeParameters.optional(),
  rope_scaling: ropeScaling,
  max_position_embeddings: positiveInt,
  bos_token_id: tokenId.nullish(),
  eos_token_id: tokenIds,
  tie_word_embeddings: bool.default(false),
};

/** Qwen's sliding-window pair (the window applies only when use_sliding_window is true). */
export const slidingWindowFields = {
  use_sliding_window: bool.default(false),
  sliding_window: z.int().nonnegative().nullish(),
};

/** The storage dtype: `torch_dtype` (transformers 4.x) or `dtype` (transformers 5). */
export const dtypeFields = {
  torch_dtype: torchDtype.optional(),
  dtype: torchDtype.optional(),
};
