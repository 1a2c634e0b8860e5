// Errors raised while loading a checkpoint's tokenizer files, rendering its chat template or
// streaming detokenised text. Each names the file it came from so the operator knows what to fix.

import { KmoeError } from './kmoe-error.js';

/** tokenizer.json, tokenizer_config.json or generation_config.json is missing, unreadable or invalid. */
export class TokenizerLoadError extends KmoeError {
  /** Path of the file at fault. */
  readonly file: string;
  /** The JSON key at fault, in the file's own spelling, if one is. */
  readonly field: string | undefined;

  constructor(message: string, options: { file: string; field?: string; hint?: string; cause?: unknown }) {
    super(message, options);
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
    super(message, options);
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
    super(message, options);
    this.file = options.file;
  }
}

/** A StreamingDetokenizer was pushed to after flush(): its text has already been finalised. */
export class DetokenizerFinishedError extends KmoeError {}
