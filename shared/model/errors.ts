// Errors raised while loading a checkpoint: its config.json, its safetensors shards, its tokenizer
// files; and while rendering its chat template or streaming detokenised text. Each names the file
// (and, when one is to blame, the field or tensor) so the operator knows what to fix.

import { type ErrorDetails, KmoeError } from '../errors/kmoe-error.js';

/** Keeps the defined string fields of `fields` as JSON-safe error details. */
function present(fields: Readonly<Record<string, string | undefined>>): ErrorDetails {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) out[k] = v;
  return out;
}

/**
 * A checkpoint's config.json is missing, unreadable, of an unsupported model family or internally
 * inconsistent. Names the file and, when one is to blame, the field.
 */
export class ModelConfigError extends KmoeError {
  /** Path of the config file (or a description of where the JSON came from). */
  readonly file: string;
  /** The config.json key at fault, in the file's own snake_case spelling, if one is. */
  readonly field: string | undefined;

  constructor(message: string, options: { file: string; field?: string; hint?: string; cause?: unknown }) {
    super(message, { ...options, details: present({ file: options.file, field: options.field }) });
    this.file = options.file;
    this.field = options.field;
  }
}

/**
 * A checkpoint directory does not hold a loadable model: no weights file, a shard index pointing at
 * missing files or tensors, or tensors whose shapes disagree with the model family's tensor table.
 */
export class CheckpointError extends KmoeError {
  /** The checkpoint directory. */
  readonly dir: string;
  /** The file at fault (index or shard), if one is. */
  readonly file: string | undefined;
  /** The tensor at fault, if exactly one is. */
  readonly tensor: string | undefined;

  constructor(
    message: string,
    options: { dir: string; file?: string; tensor?: string; hint?: string; cause?: unknown },
  ) {
    super(message, {
      ...options,
      details: present({ dir: options.dir, file: options.file, tensor: options.tensor }),
    });
    this.dir = options.dir;
    this.file = options.file;
    this.tensor = options.tensor;
  }
}

/**
 * A .safetensors file is malformed, truncated, uses a dtype kmoe cannot load, or a tensor is asked
 * for that the file does not hold.
 */
export class SafetensorsError extends KmoeError {
  readonly file: string;
  readonly tensor: string | undefined;

  constructor(message: string, options: { file: string; tensor?: string; hint?: string; cause?: unknown }) {
    super(message, { ...options, details: present({ file: options.file, tensor: options.tensor }) });
    this.file = options.file;
    this.tensor = options.tensor;
  }
}

/** tokenizer.json, tokenizer_config.json or generation_config.json is missing, unreadable or invalid. */
export class TokenizerLoadError extends KmoeError {
  /** Path of the file at fault. */
  readonly file: string;
  /** The JSON key at fault, in the file's own spelling, if one is. */
  readonly field: string | undefined;

  constructor(message: string, options: { file: string; field?: string; hint?: string; cause?: unknown }) {
    super(message, { ...options, details: present({ file: options.file, field: options.field }) });
    this.file = options.file;
    this.field = options.field;
  }
}

/**
 * The checkpoint ships no chat template, so chat-style requests cannot be turned into a prompt.
 * The serving layer answers this with HTTP 400: the client should use the completions API.
 */
export class ChatTemplateMissingError extends KmoeError {
  /** The tokenizer_config.json that was searched for `chat_template`. */
  readonly file: string;

  constructor(message: string, options: { file: string; hint?: string }) {
    super(message, { ...options, details: { file: options.file } });
    this.file = options.file;
  }
}

/**
 * The chat template failed to parse or raised while rendering (e.g. Mixtral's "Conversation roles
 * must alternate"). Usually the client's message list is at fault, hence HTTP 400 as well.
 */
export class ChatTemplateError extends KmoeError {
  /** Where the template came from (tokenizer_config.json or chat_template.jinja). */
  readonly file: string;

  constructor(message: string, options: { file: string; hint?: string; cause?: unknown }) {
    super(message, { ...options, details: { file: options.file } });
    this.file = options.file;
  }
}

/** A StreamingDetokenizer was pushed to after flush(): its text has already been finalised. */
export class DetokenizerFinishedError extends KmoeError {}
