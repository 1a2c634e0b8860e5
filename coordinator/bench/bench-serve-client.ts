// The load generator's client: one streamed /v1/completions request over fetch, its SSE events
// parsed here, timed per text chunk (time to first token, gaps between tokens) and closed with the
// usage the server reports. Kept apart from the report so it can be read on its own.

import { z } from 'zod';
import { ServeRequestError } from '../server/errors.js';

export interface StreamRequest {
  readonly url: string;
  readonly model: string;
  readonly prompt: string;
  readonly maxTokens: number;
  /** Spec string or inline profile object, sent as kmoe.routing. */
  readonly routing: string | object;
  readonly timeoutMs: number;
}

export interface StreamTiming {
  /** Milliseconds from sending the request to the first text chunk. */
  readonly ttftMs: number;
  /** Milliseconds between consecutive text chunks. */
  readonly gapsMs: number[];
  readonly completionTokens: number;
  /** Expert-token activations and what native top-K would have used, from the usage extension. */
  readonly activations: number;
  readonly nativeActivations: number;
  readonly endedAt: number;
}

const chunkSchema = z.looseObject({
  choices: z.array(z.looseObject({ text: z.string().optional() })).optional(),
  usage: z
    .looseObject({
      completion_tokens: z.number(),
      kmoe: z.looseObject({ expert_activations: z.number(), native_activations: z.number() }),
    })
    .optional(),
  error: z.looseObject({ message: z.string() }).optional(),
});

/** Sends one streamed completion and times it; throws ServeRequestError on any failure. */
export async function streamCompletion(req: StreamRequest): Promise<StreamTiming> {
  const sent = performance.now();
  const res = await fetch(`${req.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: req.model,
      prompt: req.prompt,
      max_tokens: req.maxTokens,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
      // Fixed output lengths, so every routing policy is measured on the same amount of decoding.
      kmoe: { routing: req.routing, ignore_eos: true },
    }),
    signal: AbortSignal.timeout(req.timeoutMs),
  });
  if (!res.ok || res.body === null) {
    throw new ServeRequestError(`HTTP ${res.status}: ${(await res.text()).slice(0, 500)}`);
  }
  let first: number | undefined;
  let last = 0;
  const gapsMs: number[] = [];
  let usage: z.infer<typeof chunkSchema>['usage'];
  for await (const data of sseData(res.body)) {
    if (data === '[DONE]') break;
    const chunk = chunkSchema.parse(JSON.parse(data));
    if (chunk.error) throw new ServeRequestError(`error event: ${chunk.error.message}`);
    if (chunk.usage) usage = chunk.usage;
    if (!chunk.choices?.some((c) => (c.text ?? '') !== '')) continue;
    const now = performance.now();
    if (first === undefined) first = now;
    else gapsMs.push(now - last);
    last = now;
  }
  if (first === undefined || usage === undefined) {
    throw new ServeRequestError('the stream ended without text or without usage');
  }
  return {
    ttftMs: first - sent,
    gapsMs,
    completionTokens: usage.completion_tokens,
    activations: usage.kmoe.expert_activations,
    nativeActivations: usage.kmoe.native_activations,
    endedAt: performance.now(),
  };
}

/** The `data:` payloads of a server-sent event stream, in order. */
async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const bytes of body) {
    buffer += decoder.decode(bytes, { stream: true });
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trimStart())
        .join('\n');
      if (data !== '') yield data;
    }
  }
}
