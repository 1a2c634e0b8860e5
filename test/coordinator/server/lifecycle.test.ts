// Admission limits and graceful shutdown of a real `kmoe serve`: 429 when the running set and the
// queue are full; on SIGTERM new requests get 503, a request that can finish within the deadline
// does, one that cannot ends with an error event, and the process exits 0.

import net from 'node:net';
import OpenAI from 'openai';
import type { CompletionCreateParamsStreaming } from 'openai/resources/completions';
import { afterAll, describe, expect, it } from 'vitest';
import { freshFetch } from '../../helpers/fresh-fetch.js';
import { type ServeProcess, startServe } from './serve-process.js';

let server: ServeProcess | undefined;

afterAll(async () => {
  await server?.stop();
});

/** Consumes a stream; resolves with its text and finish reason, or the error that ended it. */
async function drain(stream: AsyncIterable<OpenAI.Completion>) {
  let text = '';
  let finish: string | null = null;
  let tokens = 0;
  try {
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (choice) {
        text += choice.text;
        finish = choice.finish_reason ?? finish;
      }
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    }
    return { text, finish, tokens, error: undefined };
  } catch (error) {
    return { text, finish, tokens, error: error as InstanceType<typeof OpenAI.APIError> };
  }
}

describe('kmoe serve lifecycle', () => {
  it('refuses work beyond its limits with 429, then drains on SIGTERM and exits 0', async () => {
    server = await startServe([
      '--workers',
      '0',
      '--max-running',
      '2',
      '--max-queued',
      '0',
      '--shutdown-timeout',
      '5',
    ]);
    const url = server.url;
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const open = async (maxTokens: number) => {
      const stream = await client.completions.create({
        model: 'tiny-mixtral',
        prompt: 'The',
        max_tokens: maxTokens,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
        kmoe: { ignore_eos: true },
      } as CompletionCreateParamsStreaming);
      const it = stream[Symbol.asyncIterator]();
      // The first chunk proves the sequence is running.
      const first = await it.next();
      return drain({ [Symbol.asyncIterator]: () => it }).then((r) => ({
        ...r,
        text: (first.value as OpenAI.Completion).choices[0]!.text + r.text,
      }));
    };
    // 4000 tokens take well over the 5 s deadline (decode slows as the context grows to 4096);
    // 30 tokens take a fraction of it even on a loaded machine (100 tokens once took over 4 s on
    // a machine at load 20).
    const long = open(4000);
    const short = open(30);
    // Wait until the server reports both running before probing the limit.
    for (;;) {
      const h = (await (await fetch(`${url}/health`)).json()) as { sequences: { running: number } };
      if (h.sequences.running === 2) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const busy = await client.completions
      .create({ model: 'tiny-mixtral', prompt: 'x', max_tokens: 1 })
      .catch((e: unknown) => e);
    expect(busy).toBeInstanceOf(OpenAI.RateLimitError);
    expect((busy as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('server_busy');
    expect((busy as InstanceType<typeof OpenAI.RateLimitError>).headers.get('retry-after')).toBe('1');

    // An idle keep-alive connection (it carried one answered request) is closed when the drain
    // starts, while requests are still running, not when the listener closes after them: its
    // client reconnects elsewhere.
    const idle = await new Promise<net.Socket>((resolve) => {
      const { hostname, port } = new URL(url);
      const socket = net.connect(Number(port), hostname, () =>
        socket.write(`GET /health HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`),
      );
      socket.once('data', () => resolve(socket));
    });
    const idleClosed = new Promise<number>((resolve) => idle.once('close', () => resolve(performance.now())));
    const longEndedAt = long.then(() => performance.now());

    server.child.kill('SIGTERM');
    // From here on every request opens its own connection: the drain closes idle keep-alive
    // sockets, and a pooled one the client reused at that moment would fail in the client.
    const fresh = freshFetch;
    for (;;) {
      const ready = await fresh(`${url}/ready`);
      if (ready.status === 503) {
        expect(ready.headers.get('retry-after')).toBe('1');
        expect(await ready.json()).toMatchObject({ status: 'not_ready', reason: 'shutting down' });
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const late = await new OpenAI({
      baseURL: `${url}/v1`,
      apiKey: 'unused',
      maxRetries: 0,
      fetch: fresh,
    }).completions
      .create({ model: 'tiny-mixtral', prompt: 'x', max_tokens: 1 })
      .catch((e: unknown) => e);
    expect(late).toBeInstanceOf(OpenAI.APIError);
    expect((late as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
    expect((late as InstanceType<typeof OpenAI.APIError>).code).toBe('shutting_down');
    const health = (await (await fresh(`${url}/health`)).json()) as { status: string };
    expect(health.status).toBe('draining');

    const [longEnd, shortEnd] = await Promise.all([long, short]);
    expect(shortEnd.error).toBeUndefined();
    expect(shortEnd).toMatchObject({ finish: 'length', tokens: 30 });
    expect(longEnd.error?.code).toBe('shutting_down');
    expect(longEnd.error?.message).toMatch(/shut down before this request finished/);
    expect(longEnd.text.length).toBeGreaterThan(0);
    expect(await server.exited).toBe(0);
    expect(await idleClosed).toBeLessThan(await longEndedAt);
    expect(server.stderr()).toMatch(/"cancelled":1,"msg":"drained"/);
  });
});
