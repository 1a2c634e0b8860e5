// Turns a validated completions or chat body into what the scheduler runs: prompt ids (encoded or
// chat-templated), token limits checked against the context, sampling with OpenAI's defaults,
// stop strings and the routing policy. Every refusal is a 400 naming the field at fault.

import { randomInt } from 'node:crypto';
import { ChatTemplateError, ChatTemplateMissingError } from '../../shared/model/errors.js';
import type { ChatMessage, KmoeTokenizer } from '../../shared/model/tokenizer.js';
import type { EngineInfo } from '../engine/engine.js';
import { InvalidRequestError } from './errors.js';
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
    private readonly tokenizer: KmoeTokenizer,
    private readonly info: EngineInfo,
    private readonly routing: RoutingCatalog,
    readonly servedModelName: string,
  ) {}

  completion(body: CompletionRequest): PreparedGeneration {
    this.#checkModel(body.model);
    const promptIds = this.#completionPrompt(body.prompt);
    return this.#prepare(body, promptIds, body.max_tokens ?? DEFAULT_COMPLETION_MAX_TOKENS, 'max_tokens');
  }

  chat(body: ChatRequest): PreparedGeneration {
    this.#checkModel(body.model);
    const promptIds = this.#chatPrompt(body.messages);
    const param = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
    const maxTokens =
      body.max_completion_tokens ?? body.max_tokens ?? this.info.maxPositions - promptIds.length;
    return this.#prepare(body, promptIds, maxTokens, param);
  }

  #checkModel(model: string): void {
    if (model === this.servedModelName) return;
    throw new InvalidRequestError(
      `model '${model}' is not served here; this server serves '${this.servedModelName}'`,
      { param: 'model', code: 'model_not_found' },
    );
  }

  #completionPrompt(prompt: CompletionRequest['prompt']): number[] {
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

  #encoded(text: string): number[] {
    const ids = this.tokenizer.encode(text);
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

  #chatPrompt(messages: readonly ChatRequestMessage[]): number[] {
    const conversation: ChatMessage[] = messages.map((m) => ({
      // OpenAI's newer "developer" role is the system prompt under another name.
      role: m.role === 'developer' ? 'system' : m.role,
      content: typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text).join(''),
    }));
    try {
      const ids = this.tokenizer.encodeChat(conversation);
      if (ids.length === 0)
        throw new InvalidRequestError('messages render to no tokens', { param: 'messages' });
      return ids;
    } catch (err) {
      if (err instanceof ChatTemplateMissingError) {
        throw new InvalidRequestError(
          `this model has no chat template: ${err.message}; use /v1/completions with a plain prompt`,
          { param: 'messages', code: 'chat_template_missing' },
        );
      }
      if (err instanceof ChatTemplateError) {
        throw new InvalidRequestError(err.message, { param: 'messages', code: 'invalid_messages' });
      }
      throw err;
    }
  }

  #prepare(
    body: CommonFields,
    promptIds: number[],
    maxTokens: number,
    maxTokensParam: string,
  ): PreparedGeneration {
    const context = this.info.maxPositions;
    if (promptIds.length >= context) {
      throw new InvalidRequestError(
        `the prompt is ${promptIds.length} tokens; this model's context is ${context} positions, leaving no room to generate`,
        { param: 'prompt', code: 'context_length_exceeded' },
      );
    }
    if (promptIds.length + maxTokens > context) {
      throw new InvalidRequestError(
        `${maxTokensParam} is ${maxTokens}, but the prompt's ${promptIds.length} tokens leave room for at most ${context - promptIds.length} in this model's context of ${context}`,
        { param: maxTokensParam, code: 'context_length_exceeded' },
      );
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
        ignoreEos: body.kmoe?.ignore_eos ?? false,
      },
      routingName: routing.name,
      stream: body.stream ?? false,
      streamUsage: body.stream_options?.include_usage ?? false,
    };
  }
}
