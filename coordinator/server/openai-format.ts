// OpenAI response bodies for completions and chat, streamed (chunks) and whole, plus the usage
// object with kmoe's extension: experts per token, activations against native top-K, bytes.

import type { FinishReason, SequenceUsage } from './sequence.js';

export interface KmoeUsage {
  /** Experts per token per layer over every token this request put through the model. */
  readonly avg_k: number;
  readonly expert_activations: number;
  /** What native top-K routing would have activated for the same tokens. */
  readonly native_activations: number;
  /** 1 - expert_activations / native_activations. */
  readonly saving_vs_native: number;
  /** Bytes moved to and from remote experts for this request's tokens (0 with in-process experts); an integer. */
  readonly bytes_dispatched: number;
  /** Tokens that went through the forward pass: the prompt plus generated tokens fed back. */
  readonly processed_tokens: number;
  readonly routing: string;
}

export interface Usage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
  readonly kmoe: KmoeUsage;
}

export type Endpoint = 'completions' | 'chat';

export interface ResponseContext {
  readonly endpoint: Endpoint;
  /** `cmpl-...` / `chatcmpl-...`, shared by every chunk of one response. */
  readonly id: string;
  readonly created: number;
  readonly model: string;
}

export interface ModelShape {
  readonly numLayers: number;
  readonly nativeK: number;
}

export function usageBody(u: SequenceUsage, model: ModelShape, routing: string): Usage {
  const positions = u.processedTokens * model.numLayers;
  const native = positions * model.nativeK;
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.promptTokens + u.completionTokens,
    kmoe: {
      avg_k: positions === 0 ? 0 : u.activations / positions,
      expert_activations: u.activations,
      native_activations: native,
      saving_vs_native: native === 0 ? 0 : 1 - u.activations / native,
      // A step's bytes are shared among its sequences in proportion to their tokens: whole bytes here.
      bytes_dispatched: Math.round(u.bytes),
      processed_tokens: u.processedTokens,
      routing,
    },
  };
}

export function responseId(endpoint: Endpoint, requestId: string): string {
  return `${endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-${requestId}`;
}

function envelope(ctx: ResponseContext, streaming: boolean) {
  const object =
    ctx.endpoint === 'chat' ? (streaming ? 'chat.completion.chunk' : 'chat.completion') : 'text_completion';
  return { id: ctx.id, object, created: ctx.created, model: ctx.model };
}

/** The first chunk of a chat stream announces the role, as OpenAI's does; completions have none. */
export function roleChunk(ctx: ResponseContext): object | undefined {
  if (ctx.endpoint !== 'chat') return undefined;
  return {
    ...envelope(ctx, true),
    choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }],
  };
}

export function textChunk(ctx: ResponseContext, text: string): object {
  const choice =
    ctx.endpoint === 'chat'
      ? { index: 0, delta: { content: text }, logprobs: null, finish_reason: null }
      : { index: 0, text, logprobs: null, finish_reason: null };
  return { ...envelope(ctx, true), choices: [choice] };
}

export function finishChunk(ctx: ResponseContext, reason: FinishReason): object {
  const choice =
    ctx.endpoint === 'chat'
      ? { index: 0, delta: {}, logprobs: null, finish_reason: reason }
      : { index: 0, text: '', logprobs: null, finish_reason: reason };
  return { ...envelope(ctx, true), choices: [choice] };
}

/** stream_options.include_usage: a last chunk with no choices and the usage. */
export function usageChunk(ctx: ResponseContext, usage: Usage): object {
  return { ...envelope(ctx, true), choices: [], usage };
}

export function completeResponse(
  ctx: ResponseContext,
  text: string,
  reason: FinishReason,
  usage: Usage,
): object {
  const choice =
    ctx.endpoint === 'chat'
      ? { index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: reason }
      : { index: 0, text, logprobs: null, finish_reason: reason };
  return { ...envelope(ctx, false), choices: [choice], usage };
}

/** One model object, as /v1/models lists it and /v1/models/NAME returns it. */
export function modelEntry(model: string, created: number, extra: object): object {
  return { id: model, object: 'model', created, owned_by: 'kmoe', ...extra };
}
