// Text <-> token ids for a Hugging Face checkpoint: tokenizer.json through @huggingface/tokenizers,
// BOS/EOS and the chat template from tokenizer_config.json, and a streaming detokenizer that turns
// generated ids into text chunks without ever emitting half a UTF-8 character.

import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { z } from 'zod';
import {
  ChatTemplateError,
  ChatTemplateMissingError,
  DetokenizerFinishedError,
  TokenizerLoadError,
} from './errors.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface DecodeOptions {
  /** Drop special tokens (`<s>`, `</s>`, ...) from the text. Default true. */
  skipSpecialTokens?: boolean;
  /**
   * Apply the old BERT-era clean-up (" ." -> "." etc.). Defaults to tokenizer_config.json's
   * `clean_up_tokenization_spaces`, and to false when the file does not say, as transformers has
   * done since 4.45: the clean-up corrupts code and is not invertible.
   */
  cleanUpTokenizationSpaces?: boolean;
}

// Special tokens appear in tokenizer_config.json either as a string or, in older checkpoints, as a
// serialised AddedToken object; null means the tokenizer has none (e.g. Qwen has no BOS).
const specialTokenSchema = z.union([z.string(), z.looseObject({ content: z.string() }), z.null()]).optional();

const tokenizerConfigSchema = z.looseObject({
  add_bos_token: z.boolean().optional(),
  add_eos_token: z.boolean().optional(),
  bos_token: specialTokenSchema,
  eos_token: specialTokenSchema,
  unk_token: specialTokenSchema,
  pad_token: specialTokenSchema,
  additional_special_tokens: z
    .array(z.union([z.string(), z.looseObject({ content: z.string() })]))
    .optional(),
  clean_up_tokenization_spaces: z.boolean().optional(),
  chat_template: z
    .union([z.string(), z.array(z.object({ name: z.string(), template: z.string() })), z.null()])
    .optional(),
});

// Only what kmoe and @huggingface/tokenizers rely on; the library interprets the rest.
const tokenizerJsonSchema = z.looseObject({
  model: z.looseObject({ type: z.string() }),
  added_tokens: z
    .array(z.looseObject({ id: z.number().int().nonnegative(), content: z.string() }))
    .default([]),
});

const generationConfigSchema = z.looseObject({
  eos_token_id: z
    .union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative()), z.null()])
    .optional(),
});

type SpecialTokenValue = z.infer<typeof specialTokenSchema>;

function specialTokenContent(value: SpecialTokenValue): string | undefined {
  if (value === undefined || value === null) return undefined;
  return typeof value === 'string' ? value : value.content;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isMissingFile(error: unknown): boolean {
  return error instanceof Error && 'code' in error && error.code === 'ENOENT';
}

async function readJson(file: string, options: { optional: boolean }): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (options.optional && isMissingFile(error)) return undefined;
    throw new TokenizerLoadError(
      isMissingFile(error) ? `${file} not found` : `cannot read ${file}: ${errorMessage(error)}`,
      {
        file,
        hint: 'point kmoe at a Hugging Face model directory that contains tokenizer.json and tokenizer_config.json',
        cause: error,
      },
    );
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new TokenizerLoadError(`${file} is not valid JSON: ${errorMessage(error)}`, { file, cause: error });
  }
}

async function readOptionalText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if (isMissingFile(error)) return undefined;
    throw new TokenizerLoadError(`cannot read ${file}: ${errorMessage(error)}`, { file, cause: error });
  }
}

function parseWith<T>(schema: z.ZodType<T>, value: unknown, file: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = issue === undefined ? undefined : issue.path.join('.');
  throw new TokenizerLoadError(
    `${file} is invalid${field ? ` at '${field}'` : ''}: ${issue?.message ?? result.error.message}`,
    field ? { file, field } : { file },
  );
}

function startsWith(ids: readonly number[], prefix: readonly number[]): boolean {
  return prefix.length <= ids.length && prefix.every((id, i) => ids[i] === id);
}

function endsWith(ids: readonly number[], suffix: readonly number[]): boolean {
  const offset = ids.length - suffix.length;
  return offset >= 0 && suffix.every((id, i) => ids[offset + i] === id);
}

interface KmoeTokenizerParts {
  dir: string;
  library: Tokenizer;
  prefixIds: readonly number[];
  suffixIds: readonly number[];
  bosToken: string | undefined;
  bosTokenId: number | undefined;
  eosToken: string | undefined;
  eosTokenIds: readonly number[];
  unkToken: string | undefined;
  padToken: string | undefined;
  vocabSize: number;
  cleanUpTokenizationSpaces: boolean;
  chatTemplate: string | undefined;
  chatTemplateFile: string;
  chatTemplateMissingReason: string;
  plain: PlainText;
}

/** A special (control) token as tokenizer.json's added_tokens lists it. */
interface ControlToken {
  readonly id: number;
  readonly content: string;
  readonly lstrip: boolean;
  readonly rstrip: boolean;
}

/**
 * Encodes client text without turning control-token strings into control tokens: a second library
 * instance whose added tokens are the non-special ones plus one unguessable sentinel. Prefixing a
 * run with the sentinel encodes it as a non-first section, as the whole-text encoding would.
 */
interface PlainText {
  readonly library: () => Tokenizer;
  readonly sentinel: string;
  readonly controls: readonly ControlToken[];
}

export class KmoeTokenizer {
  /** The model directory the tokenizer was loaded from. */
  readonly dir: string;
  /** Id of the BOS token named in tokenizer_config.json, if the tokenizer has one. */
  readonly bosTokenId: number | undefined;
  /** Ids that end generation: tokenizer_config.json's eos_token plus generation_config.json's eos_token_id. */
  readonly eosTokenIds: readonly number[];
  /** One more than the largest token id, added tokens included: the embedding rows the model needs. */
  readonly vocabSize: number;
  /** The Jinja chat template (chat_template.jinja, else tokenizer_config.json's `chat_template`). */
  readonly chatTemplate: string | undefined;
  /** Ids encode() puts before / after the text (e.g. [bosTokenId] for Mixtral, nothing for the demo model). */
  readonly prefixIds: readonly number[];
  readonly suffixIds: readonly number[];

  readonly #library: Tokenizer;
  readonly #plain: PlainText;
  readonly #bosToken: string | undefined;
  readonly #eosToken: string | undefined;
  readonly #unkToken: string | undefined;
  readonly #padToken: string | undefined;
  readonly #cleanUpTokenizationSpaces: boolean;
  readonly #chatTemplateFile: string;
  readonly #chatTemplateMissingReason: string;
  #parsedTemplate: Template | undefined;

  private constructor(parts: KmoeTokenizerParts) {
    this.dir = parts.dir;
    this.#library = parts.library;
    this.#plain = parts.plain;
    this.prefixIds = parts.prefixIds;
    this.suffixIds = parts.suffixIds;
    this.#bosToken = parts.bosToken;
    this.bosTokenId = parts.bosTokenId;
    this.#eosToken = parts.eosToken;
    this.eosTokenIds = parts.eosTokenIds;
    this.#unkToken = parts.unkToken;
    this.#padToken = parts.padToken;
    this.vocabSize = parts.vocabSize;
    this.#cleanUpTokenizationSpaces = parts.cleanUpTokenizationSpaces;
    this.chatTemplate = parts.chatTemplate;
    this.#chatTemplateFile = parts.chatTemplateFile;
    this.#chatTemplateMissingReason = parts.chatTemplateMissingReason;
  }

  /**
   * Loads tokenizer.json and tokenizer_config.json (both required) from a Hugging Face model
   * directory, plus chat_template.jinja and generation_config.json when present.
   */
  static async load(dir: string): Promise<KmoeTokenizer> {
    const tokenizerFile = join(dir, 'tokenizer.json');
    const configFile = join(dir, 'tokenizer_config.json');
    const generationFile = join(dir, 'generation_config.json');
    const templateFile = join(dir, 'chat_template.jinja');

    const tokenizerJson = parseWith(
      tokenizerJsonSchema,
      await readJson(tokenizerFile, { optional: false }),
      tokenizerFile,
    );
    const config = parseWith(
      tokenizerConfigSchema,
      await readJson(configFile, { optional: false }),
      configFile,
    );
    const generationJson = await readJson(generationFile, { optional: true });
    const generation =
      generationJson === undefined
        ? undefined
        : parseWith(generationConfigSchema, generationJson, generationFile);

    const libraryConfig = {
      ...config,
      // The library expects plain strings here; older configs store AddedToken objects.
      additional_special_tokens: (config.additional_special_tokens ?? []).map((token) =>
        typeof token === 'string' ? token : token.content,
      ),
    };
    let library: Tokenizer;
    try {
      library = new Tokenizer(tokenizerJson, libraryConfig);
    } catch (error) {
      throw new TokenizerLoadError(
        `@huggingface/tokenizers cannot build a tokenizer from ${tokenizerFile}: ${errorMessage(error)}`,
        { file: tokenizerFile, cause: error },
      );
    }

    const controls: ControlToken[] = tokenizerJson.added_tokens
      .filter((t) => t['special'] === true && t.content !== '')
      .map((t) => ({
        id: t.id,
        content: t.content,
        lstrip: t['lstrip'] === true,
        rstrip: t['rstrip'] === true,
      }));
    const sentinel = `\u{F0000}kmoe-${randomBytes(12).toString('hex')}\u{F0001}`;
    // Built on first use: most prompts hold no control-token text, and a vocabulary costs memory.
    let plainBuilt: Tokenizer | undefined;
    const plainLibrary = (): Tokenizer =>
      (plainBuilt ??= new Tokenizer(
        {
          ...tokenizerJson,
          added_tokens: [
            ...tokenizerJson.added_tokens.filter((t) => t['special'] !== true),
            {
              id: tokenizerJson.added_tokens[0]?.id ?? 0,
              content: sentinel,
              single_word: false,
              lstrip: false,
              rstrip: false,
              normalized: false,
              special: true,
            },
          ],
        },
        libraryConfig,
      ));

    const idOf = (token: string | undefined, field: string): number | undefined => {
      if (token === undefined) return undefined;
      const id = library.token_to_id(token);
      if (id === undefined) {
        throw new TokenizerLoadError(
          `${configFile}: ${field} '${token}' is not in the vocabulary of ${tokenizerFile}`,
          {
            file: configFile,
            field,
          },
        );
      }
      return id;
    };
    const bosToken = specialTokenContent(config.bos_token);
    const eosToken = specialTokenContent(config.eos_token);
    const bosTokenId = idOf(bosToken, 'bos_token');
    const eosTokenId = idOf(eosToken, 'eos_token');

    // What tokenizer.json's post_processor wraps around a text, found by encoding a probe both ways.
    // kmoe always encodes without the post_processor and adds these ids itself, so that
    // add_bos_token/add_eos_token can override them (as transformers' LlamaTokenizerFast does) and
    // so that a text that already starts with BOS never gets a second one.
    const probeRaw: number[] = library.encode('a', { add_special_tokens: false }).ids;
    const probeFull: number[] = library.encode('a', { add_special_tokens: true }).ids;
    let at = -1;
    for (let i = 0; i + probeRaw.length <= probeFull.length && at < 0; i++) {
      if (probeRaw.every((id, j) => probeFull[i + j] === id)) at = i;
    }
    if (at < 0) {
      throw new TokenizerLoadError(
        `the post_processor of ${tokenizerFile} rewrites the text's tokens instead of adding special tokens around them; kmoe cannot reproduce it`,
        { file: tokenizerFile, field: 'post_processor' },
      );
    }
    let prefixIds = probeFull.slice(0, at);
    let suffixIds = probeFull.slice(at + probeRaw.length);
    const required = (id: number | undefined, field: string, flag: string): number => {
      if (id === undefined) {
        throw new TokenizerLoadError(`${configFile} sets ${flag} but has no ${field}`, {
          file: configFile,
          field,
        });
      }
      return id;
    };
    if (config.add_bos_token !== undefined) {
      prefixIds = config.add_bos_token ? [required(bosTokenId, 'bos_token', 'add_bos_token')] : [];
    }
    if (config.add_eos_token !== undefined) {
      suffixIds = config.add_eos_token ? [required(eosTokenId, 'eos_token', 'add_eos_token')] : [];
    }

    const eosTokenIds: number[] = eosTokenId === undefined ? [] : [eosTokenId];
    const generationEos = generation?.eos_token_id;
    for (const id of typeof generationEos === 'number' ? [generationEos] : (generationEos ?? [])) {
      if (!eosTokenIds.includes(id)) eosTokenIds.push(id);
    }

    let vocabSize = 0;
    for (const id of library.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);

    // transformers gives chat_template.jinja precedence over the copy in tokenizer_config.json.
    const jinjaTemplate = await readOptionalText(templateFile);
    let chatTemplate: string | undefined;
    let chatTemplateFile = configFile;
    let chatTemplateMissingReason = `${configFile} has no chat_template and ${templateFile} does not exist`;
    if (jinjaTemplate !== undefined) {
      chatTemplate = jinjaTemplate;
      chatTemplateFile = templateFile;
    } else if (typeof config.chat_template === 'string') {
      chatTemplate = config.chat_template;
    } else if (Array.isArray(config.chat_template)) {
      // The list form holds named templates (e.g. 'default', 'tool_use'); chat uses 'default'.
      chatTemplate = config.chat_template.find((entry) => entry.name === 'default')?.template;
      const names = config.chat_template.map((entry) => `'${entry.name}'`).join(', ');
      chatTemplateMissingReason = `${configFile} has named chat templates (${names}) but none called 'default'`;
    }

    return new KmoeTokenizer({
      dir,
      library,
      prefixIds,
      suffixIds,
      bosToken,
      bosTokenId,
      eosToken,
      eosTokenIds,
      unkToken: specialTokenContent(config.unk_token),
      padToken: specialTokenContent(config.pad_token),
      vocabSize,
      cleanUpTokenizationSpaces: config.clean_up_tokenization_spaces ?? false,
      chatTemplate,
      chatTemplateFile,
      chatTemplateMissingReason,
      plain: { library: plainLibrary, sentinel, controls },
    });
  }

  /**
   * Token ids of `text` with the special tokens the checkpoint asks for (BOS when add_bos_token
   * says so). A text whose own tokens already begin with those ids (e.g. a literal "<s>") does not
   * get them twice; the same holds for trailing ids.
   */
  encode(text: string): number[] {
    const ids = this.encodeRaw(text);
    const prefix = startsWith(ids, this.prefixIds) ? [] : this.prefixIds;
    const suffix = endsWith(ids, this.suffixIds) ? [] : this.suffixIds;
    return [...prefix, ...ids, ...suffix];
  }

  /**
   * Token ids of a client's text with the special tokens the checkpoint asks for: control-token
   * strings in it ("</s>", "[INST]" when special) are plain text, never control tokens, so a
   * prompt cannot forge an end of sequence or a turn. Send token ids to send control tokens.
   */
  encodeText(text: string): number[] {
    const ids = this.#plainRun(text, true);
    const prefix = startsWith(ids, this.prefixIds) ? [] : this.prefixIds;
    const suffix = endsWith(ids, this.suffixIds) ? [] : this.suffixIds;
    return [...prefix, ...ids, ...suffix];
  }

  /** Token ids of `text` alone. Special-token strings in the text ("<s>", "[INST]" if added) still map to their ids. */
  encodeRaw(text: string): number[] {
    return this.#library.encode(text, { add_special_tokens: false }).ids;
  }

  /**
   * Prompt ids for a conversation: the rendered chat template, encoded without adding special
   * tokens because the template writes its own BOS (as transformers' apply_chat_template does).
   * Only the template's own control tokens become control tokens: a message holding "</s>" or
   * "[INST]" gets them as plain text (the template is rendered with placeholders for the contents
   * to tell its text from theirs).
   * @throws ChatTemplateError also when a message holds control-token text and the template
   *   rewrites message contents, so that they cannot be told apart.
   */
  encodeChat(messages: readonly ChatMessage[], addGenerationPrompt = true): number[] {
    const { controls } = this.#plain;
    const forging = messages.findIndex((m) => controls.some((c) => m.content.includes(c.content)));
    // The usual case, and exactly what transformers encodes.
    if (forging === -1) return this.encodeRaw(this.applyChatTemplate(messages, addGenerationPrompt));
    const nonce = randomBytes(8).toString('hex');
    const marks = messages.map((_, i) => `\u{F0002}${nonce}-${i}\u{F0003}`);
    const rendered = this.applyChatTemplate(
      messages.map((m, i) => ({ ...m, content: marks[i]! })),
      addGenerationPrompt,
    );
    const found = marks.map((mark, i) => ({ i, at: rendered.indexOf(mark) }));
    if (found.some(({ i, at }) => at === -1 || rendered.indexOf(marks[i]!, at + 1) !== -1)) {
      const control = controls.find((c) => messages[forging]!.content.includes(c.content))!;
      throw new ChatTemplateError(
        `message ${forging} contains the control-token text ${JSON.stringify(control.content)}, and the chat template from ${this.#chatTemplateFile} rewrites message contents, so it cannot be kept as plain text; remove it from the message`,
        { file: this.#chatTemplateFile },
      );
    }
    // Template text is split at control tokens; contents are text whatever they hold.
    const parts: ({ kind: 'text'; text: string } | { kind: 'control'; token: ControlToken })[] = [];
    const text = (t: string) => {
      const last = parts[parts.length - 1];
      if (last?.kind === 'text') parts[parts.length - 1] = { kind: 'text', text: last.text + t };
      else parts.push({ kind: 'text', text: t });
    };
    let from = 0;
    for (const { i, at } of found.sort((a, b) => a.at - b.at)) {
      this.#splitControls(rendered.slice(from, at), text, (token) => parts.push({ kind: 'control', token }));
      text(messages[i]!.content);
      from = at + marks[i]!.length;
    }
    this.#splitControls(rendered.slice(from), text, (token) => parts.push({ kind: 'control', token }));
    // As the library does: lstrip / rstrip control tokens eat the white space next to them.
    parts.forEach((part, k) => {
      if (part.kind !== 'control') return;
      const before = parts[k - 1];
      const after = parts[k + 1];
      if (part.token.lstrip && before?.kind === 'text') before.text = before.text.trimEnd();
      if (part.token.rstrip && after?.kind === 'text') after.text = after.text.trimStart();
    });
    return parts.flatMap((part, k) =>
      part.kind === 'control' ? [part.token.id] : this.#plainRun(part.text, k === 0),
    );
  }

  /** Splits template text at control tokens (longest first), reporting text and tokens in order. */
  #splitControls(segment: string, text: (t: string) => void, control: (c: ControlToken) => void): void {
    const controls = [...this.#plain.controls].sort((a, b) => b.content.length - a.content.length);
    let at = 0;
    let plainFrom = 0;
    while (at < segment.length) {
      const c = controls.find((t) => segment.startsWith(t.content, at));
      if (c === undefined) {
        at++;
        continue;
      }
      if (at > plainFrom) text(segment.slice(plainFrom, at));
      control(c);
      at += c.content.length;
      plainFrom = at;
    }
    if (plainFrom < segment.length) text(segment.slice(plainFrom));
  }

  /** Ids of text in which control-token strings are plain text; `first`: it starts the prompt. */
  #plainRun(text: string, first: boolean): number[] {
    if (text === '') return [];
    const { sentinel, controls } = this.#plain;
    // Without control-token text both instances give the same ids.
    if (first && !controls.some((c) => text.includes(c.content))) return this.encodeRaw(text);
    const library = this.#plain.library();
    if (first) return library.encode(text, { add_special_tokens: false }).ids;
    // After the sentinel the text is a later section, as after a control token in the whole text.
    return library.encode(sentinel + text, { add_special_tokens: false }).ids.slice(1);
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    // The library rejects an empty list rather than returning the empty text.
    if (ids.length === 0) return '';
    // The library only reads the array; the cast drops `readonly` for its mutable signature.
    return this.#library.decode(ids as number[], {
      skip_special_tokens: options.skipSpecialTokens ?? true,
      clean_up_tokenization_spaces: options.cleanUpTokenizationSpaces ?? this.#cleanUpTokenizationSpaces,
    });
  }

  /**
   * Renders the chat template with the variables transformers provides (messages,
   * add_generation_prompt and the special-token strings).
   * @throws ChatTemplateMissingError when the checkpoint has no template.
   * @throws ChatTemplateError when the template cannot be parsed or raises (e.g. roles out of order).
   */
  applyChatTemplate(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    const template = this.#template();
    const variables: Record<string, unknown> = {
      messages: messages.map((message) => ({ role: message.role, content: message.content })),
      add_generation_prompt: addGenerationPrompt,
    };
    // Unset tokens stay undefined so that `{{ bos_token }}` renders as '' rather than 'None'.
    for (const [name, value] of [
      ['bos_token', this.#bosToken],
      ['eos_token', this.#eosToken],
      ['unk_token', this.#unkToken],
      ['pad_token', this.#padToken],
    ] as const) {
      if (value !== undefined) variables[name] = value;
    }
    try {
      return template.render(variables);
    } catch (error) {
      throw new ChatTemplateError(
        `the chat template from ${this.#chatTemplateFile} rejected the conversation: ${errorMessage(error)}`,
        { file: this.#chatTemplateFile, cause: error },
      );
    }
  }

  // Parsed on first use, not at load: a template this Jinja implementation cannot parse should fail
  // chat requests, not stop the model from serving plain completions.
  #template(): Template {
    if (this.#parsedTemplate !== undefined) return this.#parsedTemplate;
    if (this.chatTemplate === undefined) {
      throw new ChatTemplateMissingError(
        `${this.#chatTemplateMissingReason}, so chat messages cannot be formatted`,
        {
          file: this.#chatTemplateFile,
          hint: 'send a plain prompt to the completions endpoint, or add a chat_template to tokenizer_config.json',
        },
      );
    }
    try {
      this.#parsedTemplate = new Template(this.chatTemplate);
    } catch (error) {
      throw new ChatTemplateError(
        `cannot parse the chat template from ${this.#chatTemplateFile}: ${errorMessage(error)}`,
        { file: this.#chatTemplateFile, cause: error },
      );
    }
    return this.#parsedTemplate;
  }
}

/**
 * Tokens of context decoded ahead of the first generated token (vLLM uses the same 5): enough for
 * decoders whose output depends on the neighbouring token, such as SentencePiece dropping the
 * leading space of the first token of a text.
 */
const PROMPT_CONTEXT_TOKENS = 5;

/**
 * Turns generated token ids into text as they arrive (the prefix_offset/read_offset scheme of
 * vLLM and TGI). Each push decodes only a short window: the tokens from `prefixOffset`, where
 * `decode(ids[prefixOffset:readOffset])` is text already emitted, so the suffix beyond it is new.
 * Text ending in U+FFFD is held back: it is a UTF-8 character whose remaining byte tokens have not
 * arrived yet. The window grows only while that lasts.
 *
 * Invariant (tested): the concatenation of every push() and flush() equals
 * `decode(context + generated).slice(decode(context).length)`, which is `decode(generated)` with no
 * context. Decoding skips special tokens and never applies clean_up_tokenization_spaces: that
 * clean-up rewrites text across chunk boundaries, so (like vLLM) streamed text does without it.
 */
export class StreamingDetokenizer {
  readonly #tokenizer: KmoeTokenizer;
  readonly #ids: number[];
  #prefixOffset: number;
  #readOffset: number;
  /** Length of decode(ids[prefixOffset:readOffset]). */
  #prefixLength: number;
  #finished = false;

  /** @param contextIds the prompt, so that the first generated token is decoded as it continues it. */
  constructor(tokenizer: KmoeTokenizer, contextIds: readonly number[] = []) {
    this.#tokenizer = tokenizer;
    this.#ids = [...contextIds];
    this.#readOffset = this.#ids.length;
    this.#prefixOffset = Math.max(0, this.#readOffset - PROMPT_CONTEXT_TOKENS);
    this.#prefixLength = this.#decode(this.#prefixOffset, this.#readOffset).length;
  }

  /** Adds one generated token; returns the text it completes (often '', e.g. mid-character). */
  push(id: number): string {
    if (this.#finished) {
      throw new DetokenizerFinishedError(
        'StreamingDetokenizer.push() after flush(): the stream is finished',
        {
          hint: 'create a new StreamingDetokenizer for each generation',
        },
      );
    }
    this.#ids.push(id);
    const text = this.#decode(this.#prefixOffset, this.#ids.length);
    if (text.length <= this.#prefixLength || text.endsWith('\uFFFD')) return '';
    const completed = text.slice(this.#prefixLength);
    this.#prefixOffset = this.#readOffset;
    this.#readOffset = this.#ids.length;
    this.#prefixLength = this.#decode(this.#prefixOffset, this.#readOffset).length;
    return completed;
  }

  /** Returns whatever was held back (an incomplete character decodes to U+FFFD) and ends the stream. */
  flush(): string {
    if (this.#finished) return '';
    this.#finished = true;
    const text = this.#decode(this.#prefixOffset, this.#ids.length);
    return text.length > this.#prefixLength ? text.slice(this.#prefixLength) : '';
  }

  #decode(start: number, end: number): string {
    return this.#tokenizer.decode(this.#ids.slice(start, end), { cleanUpTokenizationSpaces: false });
  }
}
