// A real `kmoe serve --workers 0` against clients that walk away: many requests (streaming and
// not, long generations) aborted at random moments must all stop generating, so the running and
// queued gauges and the engine's live sequences return to 0, a stream left after its headers counts
// as 499; and the HTTP connection cap closes connections beyond --max-connections at once (counted). A client
// that ends its side after a complete request (half-close) gets its answer, but a generation is
// cancelled by it as by a disconnect: a server cannot tell a half-close from a close. Pipelined
// generations are cancelled when their connection goes, and a CONNECT reset mid-answer is harmless.

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scrape } from '../../helpers/prometheus.js';
import { rawRequest } from '../../helpers/raw-http.js';
import { type ServeProcess, startServe } from './serve-process.js';

const MAX_CONNECTIONS = 24;

let server: ServeProcess;

beforeAll(async () => {
  server = await startServe([
    '--workers',
    '0',
    '--max-running',
    '4',
    '--max-queued',
    '32',
    '--max-connections',
    String(MAX_CONNECTIONS),
  ]);
});

afterAll(async () => {
  expect(await server?.stop()).toBe(0);
});

/** A keep-alive GET /health on its own socket: resolves with the socket once answered, or null if closed first. */
function holdConnection(url: string): Promise<net.Socket | null> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname);
    socket.once('error', () => undefined);
    socket.once('close', () => resolve(null));
    socket.once('connect', () => socket.write(`GET /health HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`));
    socket.once('data', (d: Buffer) => {
      if (d.toString('latin1').startsWith('HTTP/1.1 200')) resolve(socket);
    });
  });
}

/** Waits until no sequence is running, queued or in the engine; 2000-token generations would take minutes. */
async function untilNoSequences(): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const m = await scrape(`${server.url}/metrics`);
    const values = [m('kmoe_sequences_running'), m('kmoe_sequences_queued'), m('kmoe_engine_sequences')];
    if (values.every((v) => v === 0)) return;
    if (Date.now() > deadline)
      throw new Error(`running, queued, engine sequences still ${values.join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A raw POST /v1/completions of a 2000-token generation. */
function longCompletion(hostname: string, prompt: string): string {
  const body = JSON.stringify({
    model: 'tiny-mixtral',
    prompt,
    max_tokens: 2000,
    kmoe: { ignore_eos: true },
  });
  return (
    `POST /v1/completions HTTP/1.1\r\nHost: ${hostname}\r\ncontent-type: application/json\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

describe('clients that go away', () => {
  // First: no pooled connections of other tests hold slots yet.
  it('closes connections beyond --max-connections at once and serves again once they go', async () => {
    const held: net.Socket[] = [];
    for (let i = 0; i < MAX_CONNECTIONS; i++) {
      const s = await holdConnection(server.url);
      expect(s).not.toBeNull();
      held.push(s!);
    }
    // One more is closed without an answer.
    expect(await holdConnection(server.url)).toBeNull();
    for (const s of held) s.destroy();
    let again: net.Socket | null = null;
    for (let i = 0; i < 100 && again === null; i++) {
      again = await holdConnection(server.url);
      if (again === null) await new Promise((r) => setTimeout(r, 20));
    }
    expect(again).not.toBeNull();
    again!.destroy();
    // Counted by why it was refused.
    const m = await scrape(`${server.url}/metrics`);
    expect(m('kmoe_http_connections_refused_total{reason="max_connections"}')).toBeGreaterThanOrEqual(1);
  });

  it('records a stream its client left after the first chunk as 499, not 200', async () => {
    const series = (status: number) => `kmoe_requests_total{endpoint="completions",status="${status}"}`;
    // A counter of a status not seen yet is absent from the scrape: 0.
    const counts = async () => {
      const m = await scrape(`${server.url}/metrics`);
      return (status: number) => {
        try {
          return m(series(status));
        } catch {
          return 0;
        }
      };
    };
    const initial = await counts();
    const controller = new AbortController();
    const res = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'tiny-mixtral',
        prompt: 'The',
        max_tokens: 2000,
        stream: true,
        kmoe: { ignore_eos: true },
      }),
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    const first = await res.body!.getReader().read();
    expect(first.done).toBe(false);
    controller.abort();
    const deadline = Date.now() + 20_000;
    for (;;) {
      const now = await counts();
      if (now(499) === initial(499) + 1) {
        expect(now(200)).toBe(initial(200));
        break;
      }
      if (Date.now() > deadline) throw new Error(`499s still ${now(499)}, 200s ${now(200)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  it('stops every aborted generation: running, queued and engine sequences return to 0', async () => {
    // Deterministic "random" abort moments, so a failure can be replayed.
    let state = 12345;
    const random = () => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state / 2 ** 32;
    };
    const clients = Array.from({ length: 20 }, async (_, i) => {
      const controller = new AbortController();
      const stream = i % 2 === 0;
      setTimeout(() => controller.abort(), Math.floor(random() * 1500));
      try {
        const res = await fetch(`${server.url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'tiny-mixtral',
            prompt: `client ${i} says`,
            max_tokens: 2000,
            temperature: 0,
            stream,
            kmoe: { ignore_eos: true },
          }),
          signal: controller.signal,
        });
        await res.text();
      } catch (err) {
        expect((err as Error).name).toBe('AbortError');
      }
    });
    await Promise.all(clients);
    // Aborted ones must be gone within a few steps.
    await untilNoSequences();
    // And stay there: no revived sequence reappears.
    await new Promise((r) => setTimeout(r, 500));
    const m = await scrape(`${server.url}/metrics`);
    expect([m('kmoe_sequences_running'), m('kmoe_sequences_queued'), m('kmoe_engine_sequences')]).toEqual([
      0, 0, 0,
    ]);
    const health = (await (await fetch(`${server.url}/health`)).json()) as { sequences: unknown };
    expect(health.sequences).toEqual({ running: 0, queued: 0, engine: 0 });
  });

  it('answers a client that half-closes after its request, but cancels a generation on it', async () => {
    const { hostname } = new URL(server.url);
    const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`;
    // /health awaits the engine thread before answering: the FIN arrives before the answer is written.
    const health = await rawRequest(server.url, [get('/health')], { endAfterWrite: true });
    expect(health.status).toBe(200);
    expect(health.json).toMatchObject({ status: 'ok' });
    const models = await rawRequest(server.url, [get('/v1/models')], { endAfterWrite: true });
    expect(models.status).toBe(200);
    expect(models.json).toMatchObject({ object: 'list' });
    // A generation of 2000 tokens, half-closed: cancelled, no answer, the sequence freed.
    const generation = await rawRequest(server.url, [longCompletion(hostname, 'The')], {
      endAfterWrite: true,
      timeoutMs: 60_000,
    });
    expect(generation.status).toBe(0);
    await untilNoSequences();
    // A generation with a cheap request pipelined behind it, then the FIN: still cancelled (the
    // FIN used to be judged by the newest request on the connection, /health).
    const behind = await rawRequest(server.url, [longCompletion(hostname, 'A'), get('/health')], {
      endAfterWrite: true,
      timeoutMs: 60_000,
    });
    expect(behind.status).toBe(0);
    await untilNoSequences();
  });

  it('cancels every pipelined generation when its connection is reset, and logs each as 499', async () => {
    const { hostname, port } = new URL(server.url);
    const closed = () =>
      scrape(`${server.url}/metrics`).then((m) =>
        m('kmoe_requests_total{endpoint="completions",status="499"}'),
      );
    const before = await closed().catch(() => 0);
    // 6 generations on one connection: 4 run (--max-running 4), the rest wait; only the first
    // response can ever own the socket, the others queue behind it.
    const socket = net.connect(Number(port), hostname);
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(Array.from({ length: 6 }, (_, i) => longCompletion(hostname, `pipelined ${i}`)).join(''));
    const deadline = Date.now() + 20_000;
    while ((await scrape(`${server.url}/metrics`))('kmoe_sequences_running') < 4) {
      if (Date.now() > deadline) throw new Error('the pipelined generations never ran');
      await new Promise((r) => setTimeout(r, 50));
    }
    socket.resetAndDestroy();
    await untilNoSequences();
    expect((await closed()) - before).toBe(6);
  });

  it('survives a CONNECT whose client resets the connection at once', async () => {
    const { hostname, port } = new URL(server.url);
    // Reset at once, and once the answer has started to arrive, a few times each.
    for (let i = 0; i < 6; i++) {
      const socket = net.connect(Number(port), hostname);
      socket.on('error', () => undefined);
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
      if (i % 2 === 1) await new Promise((resolve) => socket.once('data', resolve));
      socket.resetAndDestroy();
      await new Promise((r) => setTimeout(r, 100));
    }
    // The reset came while the server wrote its 405 to a socket Node had handed over without an
    // error listener: an uncaught exception, logged, then a drain that ended the process.
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    expect(server.stderr()).not.toMatch(/uncaught exception/);
    expect(server.child.exitCode).toBeNull();
  });
});
