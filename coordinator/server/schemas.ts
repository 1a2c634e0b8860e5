// Request bodies of the OpenAI-compatible endpoints, validated once at the edge. Fields kmoe
// cannot honour (n > 1, logprobs, penalties, tools) are rejected by name rather than silently
// ignored; fields no schema names (e.g. `user`, `stream_options` extras) pass through unread.

import { z } from 'zod';
import { MAX_TEMPERATURE } from '../sampling.js';

type Issue = { readonly input?: unknown };

/** A number in a range whose error message names the field, the range and the value sent. */
function inRange(name: string, lo: number, hi: number, loInclusive: boolean): z.ZodNumber {
  const range = `${loInclusive ? '[' : '('}${lo}, ${hi}]`;
  const error = (issue: Issue) => `${name} must be in ${range}, got ${String(issue.input)}`;
  const base = z.number({ error: `${name} must be a number` });
  return (loInclusive ? base.gte(lo, { error }) : base.gt(lo, { error })).lte(hi, { error });
}

/**
 * A field kmoe does not implement: absent, null or the value meaning "off" (e.g. n = 1) pass;
 * anything else is rejected with a message naming the feature. Never read after validation.
 */
function offOnly(off: z.ZodType, what: string): z.ZodOptional<z.ZodType<unknown>> {
  return z
    .unknown()
    .superRefine((value, ctx) => {
      if (value !== null && !off.safeParse(value).success) {
        ctx.addIssue({ code: 'custom', message: `kmoe does not support ${what}` });
      }
    })
    .optional();
}

const maxTokens = (name: string) =>
  z
    .number({ error: `${name} must be an integer` })
    // zod's int() also refuses integers beyond 2^53 (1e300 is one): say so rather than "not an integer".
    .int({ error: `${name} must be an integer below 2^53` })
    .gte(1, { error: (issue: Issue) => `${name} must be at least 1, got ${String(issue.input)}` })
    .nullable()
    .optional();

/** kmoe's extension object: `"kmoe": {"routing": "entropy:1,2@1.04"}`. */
export const kmoeExtensionSchema = z.strictObject({
  /** A spec, a profile the server loaded at start (its path), or a profile as JSON (text or object). */
  routing: z
    .union([z.string().trim().min(1), z.record(z.string(), z.unknown())], {
      error: 'kmoe.routing must be a routing spec, a loaded profile path or a routing profile object',
    })
    .optional(),
  /** Keep generating through end-of-sequence tokens, for benchmarks with fixed output lengths. */
  ignore_eos: z.boolean({ error: 'kmoe.ignore_eos must be a boolean' }).optional(),
});

const stopString = z.string().min(1, { error: 'stop strings must not be empty' });

const samplingFields = {
  model: z.string({ error: 'model is required: use the name GET /v1/models lists' }),
  temperature: inRange('temperature', 0, MAX_TEMPERATURE, true).nullable().optional(),
  top_p: inRange('top_p', 0, 1, false).nullable().optional(),
  // Every bit of the seed counts (coordinator/sampling.ts Rng); beyond 2^53 JSON numbers are inexact.
  seed: z
    .number({ error: 'seed must be an integer' })
    .int({ error: 'seed must be an integer in [0, 2^53)' })
    .min(0, { error: 'seed must be an integer in [0, 2^53)' })
    .max(Number.MAX_SAFE_INTEGER, { error: 'seed must be an integer in [0, 2^53)' })
    .nullable()
    .optional(),
  stop: z
    .union([stopString, z.array(stopString).max(4, { error: 'stop takes at most 4 strings' })], {
      error: 'stop must be a string or an array of at most 4 strings',
    })
    .nullable()
    .optional(),
  stream: z.boolean({ error: 'stream must be a boolean' }).nullable().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullable().optional() }).nullable().optional(),
  n: offOnly(z.literal(1), 'n other than 1 (send one request per choice)'),
  presence_penalty: offOnly(z.literal(0), 'presence_penalty'),
  frequency_penalty: offOnly(z.literal(0), 'frequency_penalty'),
  logit_bias: offOnly(z.strictObject({}), 'logit_bias'),
  kmoe: kmoeExtensionSchema.nullable().optional(),
};

const tokenIds = z.array(z.number().int().nonnegative());

export const completionRequestSchema = z.looseObject({
  ...samplingFields,
  prompt: z.union([z.string(), z.array(z.string()), tokenIds, z.array(tokenIds)], {
    error: 'prompt must be a string or an array of token ids',
  }),
  max_tokens: maxTokens('max_tokens'),
  max_completion_tokens: maxTokens('max_completion_tokens'),
  echo: offOnly(z.literal(false), 'echo'),
  logprobs: offOnly(z.literal(0), 'logprobs'),
  best_of: offOnly(z.literal(1), 'best_of other than 1'),
  suffix: offOnly(z.literal(''), 'suffix'),
});

const textPart = z.object({ type: z.literal('text'), text: z.string() });

const messageSchema = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant'], {
    error: 'role must be system, developer, user or assistant (kmoe has no tool messages)',
  }),
  content: z.union([z.string(), z.array(textPart), z.null()], {
    error: 'content must be a string or an array of text parts',
  }),
});

export const chatRequestSchema = z.looseObject({
  ...samplingFields,
  messages: z.array(messageSchema, { error: 'messages must be an array' }).min(1, {
    error: 'messages must hold at least one message',
  }),
  max_tokens: maxTokens('max_tokens'),
  max_completion_tokens: maxTokens('max_completion_tokens'),
  logprobs: offOnly(z.literal(false), 'logprobs'),
  top_logprobs: offOnly(z.literal(0), 'top_logprobs'),
  tools: offOnly(z.array(z.unknown()).max(0), 'tools'),
  tool_choice: offOnly(z.literal('none'), 'tool_choice'),
  response_format: offOnly(z.looseObject({ type: z.literal('text') }), 'response_format other than text'),
});

export type CompletionRequest = z.infer<typeof completionRequestSchema>;
export type ChatRequest = z.infer<typeof chatRequestSchema>;
export type ChatRequestMessage = z.infer<typeof messageSchema>;
export type KmoeExtension = z.infer<typeof kmoeExtensionSchema>;
