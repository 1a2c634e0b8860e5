// POST /v1/completions and /v1/chat/completions: validate the body (parsed and bounded by the API
// server), hand the generation to the scheduler, and relay its events as an SSE stream or one JSON
// response. A client that goes away cancels its sequence, which frees its KV cache at the next step
// boundary.

import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import { InvalidRequestError } from './errors.js';
import type { GenerationRequestBuilder, PreparedGeneration } from './generation-request.js';
import { sendError, sendJson } from './http-io.js';
import type { ServerMetrics } from './metrics.js';
import {
  completeResponse,
  type Endpoint,
  finishChunk,
  type ModelShape,
  type ResponseContext,
  responseId,
  roleChunk,
  textChunk,
  usageBody,
  usageChunk,
} from './openai-format.js';
import type { RequestScope } from './router.js';
import type { Scheduler } from './scheduler.js';
import { chatRequestSchema, completionRequestSchema } from './schemas.js';
import type { SequenceEvent, SequenceUsage } from './sequence.js';
import { SseWriter } from './sse.js';

export interface GenerationDeps {
  readonly scheduler: Scheduler;
  readonly builder: GenerationRequestBuilder;
  readonly metrics: ServerMetrics;
  readonly model: ModelShape;
}

export function generationHandler(endpoint: Endpoint, deps: GenerationDeps) {
  return async (scope: RequestScope): Promise<void> => {
    const body = scope.req.body;
    if (body === undefined) {
      throw new InvalidRequestError('the request body is empty; send a JSON object as application/json', {
        code: 'invalid_json',
      });
    }
    const prepared =
      endpoint === 'chat'
        ? await deps.builder.chat(validate(chatRequestSchema, body))
        : await deps.builder.completion(validate(completionRequestSchema, body));
    // Admitted even while some experts have no live worker (/ready is false then): a request
    // routed only to live experts completes; one routed to a lost expert fails alone in its step
    // with a 503 experts_unavailable naming them (Scheduler, Engine.stepEach).
    // Engine sequence ids must be unique even when clients reuse x-request-id values.
    const seqId = randomUUID();
    const ctx: ResponseContext = {
      endpoint,
      id: responseId(endpoint, seqId),
      created: Math.floor(Date.now() / 1000),
      model: deps.builder.servedModelName,
    };
    Object.assign(scope.summary, {
      seqId,
      promptTokens: prepared.params.promptIds.length,
      routing: prepared.routingName,
      stream: prepared.stream,
    });
    await (prepared.stream
      ? stream(scope, deps, ctx, seqId, prepared)
      : collect(scope, deps, ctx, seqId, prepared));
  };
}

function validate<T>(schema: z.ZodType<T>, body: unknown): T {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidRequestError('the request body must be a JSON object', { code: 'invalid_json' });
  }
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = issue.path.join('.');
  if (param === '') throw new InvalidRequestError(issue.message);
  const named = issue.message.startsWith(String(issue.path[0]));
  throw new InvalidRequestError(named ? issue.message : `${param}: ${issue.message}`, { param });
}

/**
 * Runs one sequence and resolves when its response is complete or its client is gone. `onEvent`
 * relays events; `onOpen` runs once the scheduler accepted the sequence (a 429 or 503 from submit
 * rejects before any byte is sent, so the error goes out as a normal JSON response).
 */
function run(
  scope: RequestScope,
  deps: GenerationDeps,
  seqId: string,
  prepared: PreparedGeneration,
  onEvent: (event: SequenceEvent) => void,
  onOpen: () => void,
): Promise<void> {
  return new Promise<void>((resolve) => {
    // The client may have left while its prompt was being tokenized: run nothing for it.
    if (scope.clientGone.aborted || scope.res.raw.closed || scope.req.raw.socket.destroyed) {
      scope.summary['cancelled'] = 'client disconnected';
      resolve();
      return;
    }
    let settled = false;
    const settle = (usage: SequenceUsage | undefined): void => {
      settled = true;
      if (usage) {
        Object.assign(scope.summary, { completionTokens: usage.completionTokens });
        deps.metrics.tokens(usage.promptTokens, usage.completionTokens);
      }
      resolve();
    };
    const handle = deps.scheduler.submit(seqId, prepared.params, (event) => {
      if (settled) return;
      onEvent(event);
      if (event.kind === 'finish') {
        scope.summary['finishReason'] = event.reason;
        settle(event.usage);
      } else if (event.kind === 'error') {
        scope.summary['error'] = event.error.message;
        settle(event.usage);
      }
    });
    scope.clientGone.addEventListener('abort', () => {
      if (settled) return;
      handle.cancel();
      scope.summary['cancelled'] = 'client disconnected';
      settle(undefined);
    });
    onOpen();
  });
}

function stream(
  scope: RequestScope,
  deps: GenerationDeps,
  ctx: ResponseContext,
  seqId: string,
  prepared: PreparedGeneration,
): Promise<void> {
  const sse = new SseWriter(scope.res.raw);
  return run(
    scope,
    deps,
    seqId,
    prepared,
    (event) => {
      if (event.kind === 'text') {
        sse.send(textChunk(ctx, event.text));
      } else if (event.kind === 'finish') {
        sse.send(finishChunk(ctx, event.reason));
        if (prepared.streamUsage) {
          sse.send(usageChunk(ctx, usageBody(event.usage, deps.model, prepared.routingName)));
        }
        sse.end();
      } else {
        sse.fail(event.error);
      }
    },
    () => {
      // From here on the stream is written to the node response directly.
      void scope.res.hijack();
      sse.open();
      const first = roleChunk(ctx);
      if (first) sse.send(first);
    },
  );
}

function collect(
  scope: RequestScope,
  deps: GenerationDeps,
  ctx: ResponseContext,
  seqId: string,
  prepared: PreparedGeneration,
): Promise<void> {
  const parts: string[] = [];
  return run(
    scope,
    deps,
    seqId,
    prepared,
    (event) => {
      if (event.kind === 'text') {
        parts.push(event.text);
      } else if (event.kind === 'finish') {
        const usage = usageBody(event.usage, deps.model, prepared.routingName);
        sendJson(scope.res, 200, completeResponse(ctx, parts.join(''), event.reason, usage));
      } else {
        sendError(scope.res, event.error);
      }
    },
    () => undefined,
  );
}
