// What one client can make the server hold before the scheduler's queue sees its requests.
// Uploads still arriving share one memory budget (kmoe serve --max-body-memory): a client holding
// many nearly complete bodies gets 429 for the next ones instead of growing the server by 8 MiB per
// connection, small requests keep being served meanwhile, and the budget comes back when an
// upload ends or its client goes. Prompts waiting for the tokenizer thread are bounded by what the
// scheduler could take in (--max-running + --max-queued); beyond, 429.

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BodyBudget, declaredBodyBytes } from '../../../coordinator/server/body-budget.js';
import { rawRequest } from '../../helpers/raw-http.js';
import { type ServeProcess, startServe } from './serve-process.js';

describe('BodyBudget', () => {
  it('admits bodies up to the budget, always at least one, and counts each release once', () => {
    const budget = new BodyBudget(100);
    const big = budget.tryReserve(150);
    expect(big).toBeDefined();
    expect(budget.tryReserve(1)).toBeUndefined();
    big!();
    big!();
    expect(budget.inFlightBytes).toBe(0);
    const a = budget.tryReserve(60);
    expect(budget.tryReserve(40)).toBeDefined();
    expect(budget.tryReserve(1)).toBeUndefined();
    a!();
    expect(budget.inFlightBytes).toBe(40);
  });

  it('counts a body by its content-length, a chunked one as the body limit, none as nothing', () => {
    expect(declaredBodyBytes({ 'content-length': '1234' }, 8192)).toBe(1234);
    expect(declaredBodyBytes({ 'content-length': '99999' }, 8192)).toBe(8192);
    expect(declaredBodyBytes({ 'transfer-encoding': 'chunked' }, 8192)).toBe(8192);
    expect(declaredBodyBytes({}, 8192)).toBe(0);
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

  /** A connection that sent the headers of a `bytes`-byte upload and part of its body, then holds. */
  async function heldUpload(bytes: number): Promise<net.Socket> {
    const { hostname, port } = new URL(server.url);
    const socket = net.connect(Number(port), hostname);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      `POST /v1/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${bytes}\r\n\r\n{"prompt": "`,
    );
    return socket;
  }

  const head = (length: number) =>
    `POST /v1/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\nconnection: close\r\n\r\n`;
  const post = (body: string) => rawRequest(server.url, [head(Buffer.byteLength(body)) + body]);
  const small = JSON.stringify({ model: 'tiny-mixtral', prompt: 'def f():', max_tokens: 2, temperature: 0 });
  // ~500 KB: refused for its length before it is tokenized, so admitted it gets a quick 400.
  const large = JSON.stringify({ model: 'tiny-mixtral', prompt: 'a'.repeat(499_950) });

  it('refuses an upload past the budget with 429, serves small requests, and recovers when uploads go', async () => {
    const held = await heldUpload(900_000);
    // Give the server the held upload's headers first.
    await new Promise((r) => setTimeout(r, 200));
    // Only the headers: the 429 comes before any of the body is read.
    const refused = await rawRequest(server.url, [head(500_000)]);
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.headers.connection).toBe('close');
    expect((refused.json as { error: { code: string; message: string } }).error).toMatchObject({
      code: 'server_busy',
      message: expect.stringMatching(/receiving 0\.9 MiB of request bodies already; retry later/),
    });
    // A small request fits beside the held upload.
    expect((await post(small)).status).toBe(200);
    held.destroy();
    let after = await post(large);
    for (let i = 0; i < 50 && after.status === 429; i++) {
      await new Promise((r) => setTimeout(r, 20));
      after = await post(large);
    }
    expect(after.status).toBe(400);
    expect((after.json as { error: { code: string } }).error.code).toBe('context_length_exceeded');
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
