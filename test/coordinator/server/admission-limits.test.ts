// What one client can make the server hold before the scheduler's queue sees its requests.
// Uploads still arriving share one memory budget (kmoe serve --max-body-memory), counted by the
// bytes that arrived: past it, uploads wait (their connections are not read) instead of growing the
// server by 8 MiB per connection, small requests that fit keep being served, headers alone hold
// nothing, and a waiting upload goes on when another ends or its client goes. Prompts waiting for the tokenizer thread are bounded by what the
// scheduler could take in (--max-running + --max-queued); beyond, 429.

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BodyBudget } from '../../../coordinator/server/body-budget.js';
import { rawRequest } from '../../helpers/raw-http.js';
import { type ServeProcess, startServe } from './serve-process.js';

describe('BodyBudget', () => {
  const upload = () => {
    const u = { paused: false, pause: () => (u.paused = true), resume: () => (u.paused = false) };
    return u;
  };

  it('counts bytes that arrived, pauses all but the oldest upload past the budget, resumes on release', () => {
    const budget = new BodyBudget(100);
    const [a, b, c] = [upload(), upload(), upload()];
    budget.received(a, 80);
    budget.received(b, 10);
    expect([a.paused, b.paused]).toEqual([false, false]);
    budget.received(b, 20); // 110 > 100: b waits
    budget.received(a, 50); // a is the oldest: it always goes on
    expect([a.paused, b.paused]).toEqual([false, true]);
    budget.received(c, 1);
    expect(c.paused).toBe(true);
    expect(budget.pausedUploads).toBe(2);
    budget.release(a); // 31 in flight: both go on
    expect([b.paused, c.paused]).toEqual([false, false]);
    expect(budget.inFlightBytes).toBe(31);
    budget.release(b);
    budget.release(b);
    budget.release(c);
    expect(budget.inFlightBytes).toBe(0);
  });

  it('a declared length alone costs nothing', () => {
    const budget = new BodyBudget(100);
    const held = [upload(), upload(), upload()];
    for (const u of held) budget.received(u, 0);
    const fresh = upload();
    budget.received(fresh, 90);
    expect(fresh.paused).toBe(false);
  });
});

describe('kmoe serve admission before the queue', () => {
  let server: ServeProcess;
  beforeAll(async () => {
    server = await startServe([
      '--workers',
      '0',
      '--max-body-memory',
      '1MiB',
      '--max-running',
      '1',
      '--max-queued',
      '1',
    ]);
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  /** A connection that sent the headers of a `bytes`-byte upload and `sent` bytes of it, then holds. */
  async function heldUpload(bytes: number, sent: number): Promise<net.Socket> {
    const { hostname, port } = new URL(server.url);
    const socket = net.connect(Number(port), hostname);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      `POST /v1/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${bytes}\r\n\r\n`,
    );
    if (sent > 0) socket.write(`{"prompt": "${'a'.repeat(sent - 12)}`);
    return socket;
  }

  const head = (length: number) =>
    `POST /v1/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\nconnection: close\r\n\r\n`;
  const post = (body: string) => rawRequest(server.url, [head(Buffer.byteLength(body)) + body]);
  const small = JSON.stringify({ model: 'tiny-mixtral', prompt: 'def f():', max_tokens: 2, temperature: 0 });
  // ~500 KB: refused for its length before it is tokenized, so admitted it gets a quick 400.
  const large = JSON.stringify({ model: 'tiny-mixtral', prompt: 'a'.repeat(499_950) });

  it('holds uploads past the budget back until others are done; headers alone hold nothing', async () => {
    // Headers of 8 MiB uploads and no body: nothing arrived, nothing is counted.
    const idle = await Promise.all([1, 2, 3, 4].map(() => heldUpload(8 * 2 ** 20, 0)));
    expect((await post(small)).status).toBe(200);
    // 900 KB that did arrive hold most of the 1 MiB budget.
    const held = await heldUpload(900_000, 899_000);
    await new Promise((r) => setTimeout(r, 300));
    // A small request still fits beside it; a large one waits for room.
    expect((await post(small)).status).toBe(200);
    let answered = false;
    const waiting = post(large).then((r) => {
      answered = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 1_000));
    expect(answered).toBe(false);
    held.destroy();
    const after = await waiting;
    expect(after.status).toBe(400);
    expect((after.json as { error: { code: string } }).error.code).toBe('context_length_exceeded');
    for (const s of idle) s.destroy();
  });

  it('refuses prompts beyond --max-running + --max-queued waiting for the tokenizer with 429', async () => {
    // Long enough to take the tokenizer thread a while, short enough to be tokenized (refused after).
    const long = JSON.stringify({ model: 'tiny-mixtral', prompt: 'def f(x):\n    return x\n'.repeat(2_500) });
    const answers = await Promise.all(Array.from({ length: 16 }, () => post(long)));
    const codes = answers.map((a) => (a.json as { error: { code: string } }).error.code);
    expect(
      codes.every((c) => c === 'server_busy' || c === 'context_length_exceeded'),
      codes.join(),
    ).toBe(true);
    const busy = answers.filter((a) => a.status === 429);
    expect(busy.length).toBeGreaterThan(0);
    expect((busy[0]!.json as { error: { message: string } }).error.message).toMatch(
      /^2 prompts are waiting to be tokenized already; retry later$/,
    );
    // Nothing is held afterwards.
    expect((await post(small)).status).toBe(200);
  });
});
