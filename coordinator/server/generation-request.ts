// Turns a validated completions or chat body into what the scheduler runs: prompt ids (encoded or
// chat-templated on the tokenizer thread, after a length bound that refuses text too long for the
// context without tokenizing it), token limits checked against the context, sampling with OpenAI's
// defaults, stop strings and the routing policy. Every refusal is a 400 naming the field at fault.

import { randomInt } from 'node:crypto';
import { KmoeError } from '../../shared/errors/kmoe-error.js';
import type { ChatMessage } from '../../shared/model/tokenizer.js';
import { contextProblem } from '../context-room.js';
import type { EngineInfo } from '../engine/engine.js';
import { InvalidRequestError, ModelNotFoundError } from './errors.js';
import type { PromptTokenizer } from './prompt-tokenizer.js';
import type { RoutingCatalog } from './routing-catalog.js';
import type { ChatRequest, ChatRequestMessage, CompletionRequest } from './schemas.js';
import type { GenerationParams } from './sequence.js';

/** OpenAI's default for /v1/completions; chat defaults to the rest of the context. */
const DEFAULT_COMPLETION_MAX_TOKENS = 16;

export interface PreparedGeneration {
  readonly params: GenerationParams;
  /** The routing policy's name, reported in the usage extension. */
  readonly routingName: string;
  readonly stream: boolean;
  /** stream_options.include_usage: send a final chunk carrying usage. */
  readonly streamUsage: boolean;
}

type CommonFields = Pick<
  CompletionRequest,
  'model' | 'temperature' | 'top_p' | 'seed' | 'stop' | 'stream' | 'stream_options' | 'kmoe'
>;

export class GenerationRequestBuilder {
  constructor(
    private readonly tokenizer: PromptTokenizer,
    private readonly info: EngineInfo,
    private readonly routing: RoutingCatalog,
    readonly servedModelName: string,
  ) {}

  async completion(body: CompletionRequest): Promise<PreparedGeneration> {
    this.#checkModel(body.model);
    const promptIds = await this.#completionPrompt(body.prompt);
    // max_completion_tokens is the newer name OpenAI gives max_tokens; it wins when both are sent.
    const param = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_COMPLETION_MAX_TOKENS;
    return this.#prepare(body, promptIds, maxTokens, param);
  }

  async chat(body: ChatRequest): Promise<PreparedGeneration> {
    this.#checkModel(body.model);
    const promptIds = await this.#chatPrompt(body.messages);
    const param = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
    const maxTokens =
      body.max_completion_tokens ?? body.max_tokens ?? this.info.maxPositions - promptIds.length;
    return this.#prepare(body, promptIds, maxTokens, param);
  }

  #checkModel(model: string): void {
    if (model !== this.servedModelName) throw new ModelNotFoundError(model, this.servedModelName);
  }

  #completionPrompt(prompt: CompletionRequest['prompt']): Promise<number[]> | number[] {
    if (typeof prompt === 'string') return this.#encoded(prompt);
    if (prompt.length === 0) throw new InvalidRequestError('prompt is empty', { param: 'prompt' });
    const [first] = prompt;
    if (typeof first === 'number') return this.#checkedIds(prompt as number[]);
    if (prompt.length > 1) {
      throw new InvalidRequestError(
        `prompt holds ${prompt.length} prompts; kmoe takes one prompt per request (send them as separate requests, they are batched together)`,
        { param: 'prompt' },
      );
    }
    return typeof first === 'string' ? this.#encoded(first) : this.#checkedIds(first!);
  }

  async #encoded(text: string): Promise<number[]> {
    this.#checkLength(text.length, 'prompt');
    const ids = await this.tokenizer.encode(text);
    if (ids.length === 0) throw new InvalidRequestError('prompt encodes to no tokens', { param: 'prompt' });
    return ids;
  }

  #checkedIds(ids: readonly number[]): number[] {
    if (ids.length === 0) throw new InvalidRequestError('prompt is empty', { param: 'prompt' });
    const bad = ids.find((id) => id >= this.info.vocabSize);
    if (bad !== undefined) {
      throw new InvalidRequestError(
        `prompt token id ${bad} is outside the vocabulary [0, ${this.info.vocabSize})`,
        {
          param: 'prompt',
        },
      );
    }
    return [...ids];
  }

  /**
   * Refuses text that cannot fit the context before any tokenization: no token stands for more
   * than `charsPerTokenBound` code units of text, so longer text has more tokens than positions.
   */
  #checkLength(chars: number, param: string): void {
    const context = this.info.maxPositions;
    const limit = context * this.tokenizer.charsPerTokenBound;
    if (chars <= limit) return;
    throw new InvalidRequestError(
      `${param} is ${chars} characters; this model's context of ${context} tokens holds at most ${limit} (a token stands for at most ${this.tokenizer.charsPerTokenBound})`,
      { param, code: 'context_length_exceeded' },
    );
  }

  async #chatPrompt(messages: readonly ChatRequestMessage[]): Promise<number[]> {
    const conversation: ChatMessage[] = messages.map((m) => ({
      // OpenAI's newer "developer" role is the system prompt under another name.
      role: m.role === 'developer' ? 'system' : m.role,
      content: typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text).join(''),
    }));
    // The template only adds text around the contents, so their length bounds the prompt's.
    this.#checkLength(
      conversation.reduce((n, m) => n + m.content.length, 0),
      'messages',
    );
    let ids: number[];
    try {
      ids = await this.tokenizer.encodeChat(conversation);
    } catch (err) {
      // Raised on the tokenizer thread: recognised by code, which crosses the thread boundary.
      if (err instanceof KmoeError && err.code === 'chat_template_missing') {
        // Not err.message: it names the server's files by absolute path, which clients need not see.
        throw new InvalidRequestError(
          'this model has no chat template (no chat_template in its tokenizer_config.json, no chat_template.jinja); use /v1/completions with a plain prompt',
          { param: 'messages', code: 'chat_template_missing' },
        );
      }
      if (err instanceof KmoeError && err.code === 'chat_template') {
        throw new InvalidRequestError(err.message, { param: 'messages', code: 'invalid_messages' });
      }
      throw err;
    }
    if (ids.length === 0)
      throw new InvalidRequestError('messages render to no tokens', { param: 'messages' });
    return ids;
  }

  #prepare(
    body: CommonFields,
    promptIds: number[],
    maxTokens: number,
    maxTokensParam: string,
  ): PreparedGeneration {
    const tooLong = contextProblem(promptIds.length, maxTokens, this.info.maxPositions, maxTokensParam);
    if (tooLong) {
      throw new InvalidRequestError(tooLong.message, {
        param: tooLong.field === 'prompt' ? 'prompt' : maxTokensParam,
        code: 'context_length_exceeded',
      });
    }
    const routing = this.routing.resolve(body.kmoe?.routing);
    const stop = body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
    return {
      params: {
        promptIds,
        maxTokens,
        sampling: {
          temperature: body.temperature ?? 1,
          topP: body.top_p ?? 1,
          // Without a seed a request is not reproducible, as with OpenAI.
          seed: body.seed ?? randomInt(0, 2 ** 32),
        },
        stop,
        routing: routing.key,
        ...(routing.text === undefined ? {} : { routingText: routing.text }),
        ignoreEos: body.kmoe?.ignore_eos ?? false,
      },
      routingName: routing.name,
      stream: body.stream ?? false,
      streamUsage: body.stream_options?.include_usage ?? false,
    };
  }
}
