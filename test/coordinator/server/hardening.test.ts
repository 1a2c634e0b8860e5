// A real `kmoe serve` against a hostile client: malformed request targets and request lines, broken
// chunked bodies, oversized headers, non-JSON content types, deeply nested and oversized JSON,
// prompts far beyond the context, uploads cut short. Every answer is an OpenAI-style JSON error
// with a stable code, the server stays up, and a maximal request leaves /health and running
// streams answering while it is being refused.

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseScrape, scrape } from '../../helpers/prometheus.js';
import { rawRequest } from '../../helpers/raw-http.js';
import { accessLine, logRecords } from './access-log.js';
import { type ServeProcess, startServe } from './serve-process.js';

const MODEL = 'tiny-mixtral';
/** `kmoe serve`'s body limit. */
const BODY_LIMIT = 8 * 1024 * 1024;

let server: ServeProcess;

beforeAll(async () => {
  server = await startServe(['--workers', '0']);
});

afterAll(async () => {
  expect(await server?.stop()).toBe(0);
});

type ErrorBody = { error: { message: string; type: string; param: string | null; code: string } };

async function postJson(body: string, path = '/v1/completions') {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  return { status: res.status, body: (await res.json()) as ErrorBody };
}

function expectOpenAIError(json: unknown, code: string): ErrorBody['error'] {
  const error = (json as ErrorBody).error;
  expect(error).toMatchObject({ type: expect.any(String), message: expect.any(String), code });
  return error;
}

/** Sends `request` (incomplete) on a fresh connection, then resets it (TCP RST), as a crashed client does. */
async function resetAfter(request: string): Promise<void> {
  const { hostname, port } = new URL(server.url);
  const socket = net.connect(Number(port), hostname);
  socket.on('error', () => undefined);
  await new Promise((r) => socket.once('connect', r));
  socket.write(request);
  // Long enough for the server to read what was sent before the reset arrives.
  await new Promise((r) => setTimeout(r, 200));
  const closed = new Promise((r) => socket.once('close', r));
  socket.resetAndDestroy();
  await closed;
}

async function greedy(): Promise<string> {
  const res = await postJson(
    JSON.stringify({ model: MODEL, prompt: 'def f():', max_tokens: 6, temperature: 0 }),
  );
  expect(res.status).toBe(200);
  return (res.body as unknown as { choices: { text: string }[] }).choices[0]!.text;
}

describe('requests Node or fastify refuse before any handler', () => {
  const head = (requestLine: string, headers = '') =>
    `${requestLine}\r\nhost: localhost\r\n${headers}connection: close\r\n\r\n`;

  it.each([
    ['absolute-form target that URL rejects', head('GET http://[::1 HTTP/1.1'), 400, 'invalid_url'],
    ['absolute-form target with a bad port', head('GET http://x:99999999/ HTTP/1.1'), 400, 'invalid_url'],
    ['authority-form target on GET', head('GET example.com:443 HTTP/1.1'), 400, 'bad_request_line'],
    ['asterisk-form target', head('OPTIONS * HTTP/1.1'), 404, 'not_found'],
    ['CONNECT', head('CONNECT example.com:443 HTTP/1.1'), 405, 'method_not_allowed'],
    ['garbage request line', 'HELLO\r\n\r\n', 400, 'bad_request_line'],
    ['bad percent-encoding in the path', head('GET /health%zz HTTP/1.1'), 400, 'invalid_url'],
    ['unsupported HTTP version', head('GET /health HTTP/3.0'), 400, 'bad_request_line'],
    ['header without a colon', head('GET /health HTTP/1.1', 'nonsense\r\n'), 400, 'bad_header'],
    [
      'oversized headers',
      head('GET /health HTTP/1.1', `x-big: ${'a'.repeat(20_000)}\r\n`),
      431,
      'headers_too_large',
    ],
  ])('%s', async (_, request, status, code) => {
    const res = await rawRequest(server.url, [request]);
    expect(res.status).toBe(status);
    expectOpenAIError(res.json, code);
  });

  it('Expect: 100-continue invites only an upload that will be read', async () => {
    const body = JSON.stringify({ model: MODEL, prompt: 'def f():', max_tokens: 2, temperature: 0 });
    const request = (host: string, length = Buffer.byteLength(body)) =>
      `POST /v1/completions HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n`;
    // Refused whatever its body (the Host check): the refusal comes first, no 100.
    const refused = await rawRequest(server.url, [request('attacker.example')]);
    expect(refused.status).toBe(403);
    // Too large to be read: 413 at once.
    const tooLarge = await rawRequest(server.url, [request('localhost', 64 * 2 ** 20)]);
    expect(tooLarge.status).toBe(413);
    // A request that will be read: 100, then the answer once the body has come.
    const ok = await rawRequest(server.url, [request('localhost'), body], { gapMs: 100 });
    expect(ok.status).toBe(100);
    expect(ok.body).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    // A chunked upload (no length to judge) is invited too.
    const chunked = await rawRequest(
      server.url,
      [
        'POST /v1/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n',
        `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`,
      ],
      { gapMs: 100 },
    );
    expect(chunked.status).toBe(100);
    expect(chunked.body).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  });

  it("CONNECT's 405, written straight to the socket, names the methods its target takes", async () => {
    const res = await rawRequest(server.url, [head('CONNECT example.com:443 HTTP/1.1')]);
    expect(res.status).toBe(405);
    // A host, CONNECT's usual target: every method the server takes.
    expect(res.headers.allow?.split(', ').sort()).toEqual(['GET', 'HEAD', 'POST']);
    expect(res.headers.connection).toBe('close');
    expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.body));
    // One of the paths: that path's methods.
    const path = await rawRequest(server.url, [head('CONNECT /v1/models HTTP/1.1')]);
    expect(path.headers.allow).toBe('GET, HEAD');
  });

  it.each([
    ['CONNECT', 'CONNECT example.com:443 HTTP/1.1', 405, 'method_not_allowed', 'example.com:443'],
    ['an unsupported Expect', 'GET /v1/models HTTP/1.1', 417, 'expectation_failed', '/v1/models'],
  ])(
    '%s answers carry x-request-id and get an access line like every other answer, duration included',
    async (_, requestLine, status, code, path) => {
      const expect417 = status === 417 ? 'expect: 200-ok\r\n' : '';
      const id = `trace-${status}`;
      const echoed = await rawRequest(server.url, [head(requestLine, `${expect417}x-request-id: ${id}\r\n`)]);
      expect(echoed.status).toBe(status);
      expect(echoed.headers['x-request-id']).toBe(id);
      expect(await accessLine(server.stderr, id)).toMatchObject({
        level: 30,
        method: requestLine.split(' ')[0],
        path,
        status,
        ms: expect.any(Number),
        errorCode: code,
        error: (echoed.json as ErrorBody).error.message,
      });
      // A client's id that is not a valid one is replaced by a fresh id.
      const fresh = await rawRequest(server.url, [head(requestLine, `${expect417}x-request-id: a b\r\n`)]);
      expect(fresh.status).toBe(status);
      expect(fresh.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      expectOpenAIError(fresh.json, code);
    },
  );

  it("a 417 to /health is logged at debug level, as /health's other answers are", async () => {
    const expect417 = 'expect: 200-ok\r\n';
    expect(
      (
        await rawRequest(server.url, [
          head('GET /health HTTP/1.1', `${expect417}x-request-id: quiet-417\r\n`),
        ])
      ).status,
    ).toBe(417);
    expect(
      (await rawRequest(server.url, [head('POST /health HTTP/1.1', 'x-request-id: quiet-405\r\n')])).status,
    ).toBe(405);
    // Logged in the order answered: once a later answer's line is there, theirs would be too at info.
    expect(
      (
        await rawRequest(server.url, [
          head('GET /v1/models HTTP/1.1', `${expect417}x-request-id: loud-417\r\n`),
        ])
      ).status,
    ).toBe(417);
    expect(await accessLine(server.stderr, 'loud-417')).toMatchObject({ level: 30, status: 417 });
    const lines = logRecords(server.stderr()).filter((r) => r['msg'] === 'request');
    expect(lines.filter((r) => r['reqId'] === 'quiet-417' || r['reqId'] === 'quiet-405')).toEqual([]);
  });

  it.each([
    ['in UTF-8 is decoded', 'expect-utf8', Buffer.from('café ✓', 'utf8'), 'café ✓'],
    // Not UTF-8 (here latin-1): not guessed at, each non-ASCII byte shown as it came.
    ['in another charset is escaped', 'expect-latin1', Buffer.from('café', 'latin1'), 'caf\\xe9'],
  ])('a 417 quoting a non-ASCII Expect value %s', async (_, id, value, shown) => {
    const res = await rawRequest(server.url, [
      Buffer.concat([
        Buffer.from(`GET /v1/models HTTP/1.1\r\nhost: localhost\r\nx-request-id: ${id}\r\nexpect: `),
        value,
        Buffer.from('\r\nconnection: close\r\n\r\n'),
      ]),
    ]);
    expect(res.status).toBe(417);
    const message = `expect: ${shown} is not supported; only 100-continue is`;
    expect(expectOpenAIError(res.json, 'expectation_failed').message).toBe(message);
    expect(await accessLine(server.stderr, id)).toMatchObject({ status: 417, error: message });
  });

  it.each([
    [
      'oversized headers',
      head('GET /health HTTP/1.1', `x-big: ${'a'.repeat(20_000)}\r\n`),
      431,
      'headers_too_large',
      'HPE_HEADER_OVERFLOW',
    ],
    ['an invalid method', head('G@T /health HTTP/1.1'), 400, 'bad_request_line', 'HPE_INVALID_METHOD'],
    [
      'a control character in a header value',
      head('GET /health HTTP/1.1', 'x-note: a\x01b\r\n'),
      400,
      'bad_header',
      'HPE_INVALID_HEADER_TOKEN',
    ],
  ])(
    "the parser's refusal of %s is answered and logged like any other error",
    async (_, request, status, code, parserCode) => {
      const res = await rawRequest(server.url, [request]);
      expect(res.status).toBe(status);
      expectOpenAIError(res.json, code);
      // No request was parsed, so no client id to echo: a fresh one, under which it is logged.
      const id = res.headers['x-request-id'];
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(res.headers.connection).toBe('close');
      expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.body));
      const line = await accessLine(server.stderr, id!);
      expect(line).toMatchObject({
        level: 30,
        status,
        errorCode: code,
        parserCode,
        error: (res.json as ErrorBody).error.message,
      });
      // No request began, so there is no duration to give.
      expect(line).not.toHaveProperty('ms');
    },
  );

  it('an absolute-form target is routed by its path, and its authority is the one the Host check reads', async () => {
    const port = new URL(server.url).port;
    const res = await rawRequest(server.url, [head(`GET http://localhost:${port}/health HTTP/1.1`)]);
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: 'ok' });
    // RFC 9112: the target's authority wins over `Host: localhost`.
    const other = await rawRequest(server.url, [head('GET http://other.example/health HTTP/1.1')]);
    expect(other.status).toBe(403);
    expectOpenAIError(other.json, 'host_not_allowed');
  });

  it('a malformed chunked body', async () => {
    const res = await rawRequest(server.url, [
      'POST /v1/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n',
      'zz\r\n{}\r\n0\r\n\r\n',
    ]);
    expect(res.status).toBe(400);
    expectOpenAIError(res.json, 'bad_chunked_encoding');
  });

  it("a chunk's extensions over Node's 16 KiB get 413, as Node answers them, with the request's id and line", async () => {
    const res = await rawRequest(server.url, [
      'POST /v1/completions HTTP/1.1\r\nhost: localhost\r\nx-request-id: chunk-ext\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n',
      `2;${'e'.repeat(17_000)}\r\n{}\r\n0\r\n\r\n`,
    ]);
    expect(res.status).toBe(413);
    const error = expectOpenAIError(res.json, 'chunk_extensions_too_large');
    expect(res.headers['x-request-id']).toBe('chunk-ext');
    expect(res.headers.connection).toBe('close');
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(await accessLine(server.stderr, 'chunk-ext')).toMatchObject({
      method: 'POST',
      path: '/v1/completions',
      status: 413,
      error: error.message,
      errorCode: 'chunk_extensions_too_large',
      parserCode: 'HPE_CHUNK_EXTENSIONS_OVERFLOW',
    });
  });

  it('a body shorter than its content-length, then the client gives up', async () => {
    const before = await scrape(`${server.url}/metrics`);
    const errors500 = () => {
      try {
        return before('kmoe_requests_total{endpoint="completions",status="500"}');
      } catch {
        return 0;
      }
    };
    const base500 = errors500();
    await rawRequest(
      server.url,
      [
        'POST /v1/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n',
        '{"model": "tiny',
      ],
      { abort: true, gapMs: 50 },
    );
    // The server logs the cut upload at info level as a cancellation, and counts no 500.
    for (
      let i = 0;
      i < 100 && !/client disconnected before the body was complete/.test(server.stderr());
      i++
    ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const line = server
      .stderr()
      .split('\n')
      .find((l) => l.includes('client disconnected before the body was complete'));
    expect(JSON.parse(line!)).toMatchObject({ level: 30, status: 499 });
    const after = await scrape(`${server.url}/metrics`);
    expect(after('kmoe_requests_total{endpoint="completions",status="499"}')).toBeGreaterThan(0);
    expect(errors500()).toBe(base500);
  });
  it('a client that resets its connection is written nothing, and logged as leaving, not as bad HTTP', async () => {
    const before = server.stderr().length;
    // Mid-headers: no request exists yet, so there is nothing to answer or log.
    await resetAfter('GET /health HTTP/1.1\r\nhost: loc');
    // Mid-body: the request's access line says the client left (499), not that its HTTP was bad.
    await resetAfter(
      'POST /v1/completions HTTP/1.1\r\nhost: localhost\r\nx-request-id: reset-1\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"model": "tiny',
    );
    const line = await accessLine(server.stderr, 'reset-1');
    expect(line).toMatchObject({
      level: 30,
      status: 499,
      cancelled: 'client disconnected before the body was complete',
    });
    expect(line).not.toHaveProperty('error');
    expect(line).not.toHaveProperty('parserCode');
    const since = logRecords(server.stderr().slice(before));
    expect(since.filter((r) => r['parserCode'] !== undefined || (r['level'] as number) >= 40)).toEqual([]);
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });
});

describe('bodies', () => {
  it.each([
    ['text/plain', 'text/plain'],
    ['a form post', 'application/x-www-form-urlencoded'],
    ['multipart', 'multipart/form-data; boundary=x'],
    ['JSON in another charset', 'application/json; charset=utf-16'],
  ])('%s is a 415', async (_, contentType) => {
    const res = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': contentType },
      body: JSON.stringify({ model: MODEL, prompt: 'x' }),
    });
    expect(res.status).toBe(415);
    expectOpenAIError(await res.json(), 'unsupported_media_type');
  });

  it('a body without a content-type is a 415, none at all a 400', async () => {
    const res = await rawRequest(server.url, [
      'POST /v1/completions HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}',
    ]);
    expect(res.status).toBe(415);
    expectOpenAIError(res.json, 'unsupported_media_type');
    const empty = await fetch(`${server.url}/v1/completions`, { method: 'POST' });
    expect(empty.status).toBe(400);
    expectOpenAIError(await empty.json(), 'invalid_json');
  });

  it('a body over the limit is a 413, before it is read', async () => {
    const res = await rawRequest(server.url, [
      `POST /v1/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${BODY_LIMIT + 1}\r\n\r\n`,
    ]);
    expect(res.status).toBe(413);
    expect(res.headers['connection']).toBe('close');
    expectOpenAIError(res.json, 'payload_too_large');
  });

  it('deeply nested kmoe.routing is a 400 naming it', async () => {
    const deep = `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`;
    const res = await postJson(`{"model":"${MODEL}","prompt":"x","kmoe":{"routing":${deep}}}`);
    expect(res.status).toBe(400);
    expect(expectOpenAIError(res.body, 'json_too_deep').param).toBe('kmoe.routing');
    // Just past any legitimate depth, parsed, still refused by name.
    const shallow = `${'{"a":'.repeat(40)}1${'}'.repeat(40)}`;
    const again = await postJson(`{"model":"${MODEL}","prompt":"x","kmoe":{"routing":${shallow}}}`);
    expect(again.status).toBe(400);
    expect(again.body.error.param).toBe('kmoe.routing');
  });

  it('a million token ids are refused without converting them', async () => {
    const ids = `[${Array.from({ length: 1_000_000 }, () => '13').join(',')}]`;
    const res = await postJson(`{"model":"${MODEL}","prompt":${ids}}`);
    expect(res.status).toBe(400);
    expect(expectOpenAIError(res.body, 'context_length_exceeded').param).toBe('prompt');
  });

  it('objects with more fields than the context, and bodies of too many values, are refused', async () => {
    const keys = `{${Array.from({ length: 100_000 }, (_, i) => `"k${i}":1`).join(',')}}`;
    const wide = await postJson(keys);
    expect(wide.status).toBe(400);
    expect(expectOpenAIError(wide.body, 'too_many_items').param).toBeNull();
    const stops = await postJson(`{"model":"${MODEL}","prompt":"x","stop":[${'"a",'.repeat(5000)}"a"]}`);
    expect(stops.status).toBe(400);
    expect(expectOpenAIError(stops.body, 'too_many_items').param).toBe('stop');
    const rows = Array.from({ length: 100 }, () => `[${Array.from({ length: 4000 }, () => '1').join(',')}]`);
    const many = await postJson(`{"model":"${MODEL}","prompt":[${rows.join(',')}]}`);
    expect(many.status).toBe(400);
    expect(expectOpenAIError(many.body, 'too_many_items').message).toMatch(/values in all/);
  });

  it('a prompt longer than the context could hold is refused before tokenizing', async () => {
    const res = await postJson(JSON.stringify({ model: MODEL, prompt: 'ab'.repeat(3_000_000) }));
    expect(res.status).toBe(400);
    const error = expectOpenAIError(res.body, 'context_length_exceeded');
    expect(error.param).toBe('prompt');
    expect(error.message).toMatch(
      /prompt is 6000000 characters; this model's context of 4096 tokens holds at most/,
    );
  });

  it('a megabyte routing spec or model name is refused quickly with a bounded message', async () => {
    const spec = await postJson(
      JSON.stringify({ model: MODEL, prompt: 'x', kmoe: { routing: `entropy:${'1,'.repeat(500_000)}2@1` } }),
    );
    expect(spec.status).toBe(400);
    expect(expectOpenAIError(spec.body, 'invalid_routing').param).toBe('kmoe.routing');
    const model = await postJson(JSON.stringify({ model: 'm'.repeat(1_000_000), prompt: 'x' }));
    expect(model.status).toBe(404);
    expect(expectOpenAIError(model.body, 'model_not_found').message.length).toBeLessThan(400);
  });

  it('control-token text in a prompt is text: "</s></s></s>" is 10 prompt tokens, not 3 EOS ids', async () => {
    const res = await postJson(JSON.stringify({ model: MODEL, prompt: '</s></s></s>', max_tokens: 1 }));
    expect(res.status).toBe(200);
    expect((res.body as unknown as { usage: { prompt_tokens: number } }).usage.prompt_tokens).toBe(10);
  });

  it('max_completion_tokens is honoured on /v1/completions', async () => {
    const res = await postJson(
      JSON.stringify({
        model: MODEL,
        prompt: 'The',
        max_completion_tokens: 5,
        temperature: 0,
        kmoe: { ignore_eos: true },
      }),
    );
    expect(res.status).toBe(200);
    expect((res.body as unknown as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(5);
  });
});

describe('405s and metrics', () => {
  it('labels a 405 with the endpoint it was sent to', async () => {
    for (const method of ['GET', 'PUT', 'DELETE', 'OPTIONS']) {
      const res = await fetch(`${server.url}/v1/completions`, { method });
      expect(res.status).toBe(405);
      // RFC 9110: a 405 names the methods the resource takes.
      expect(res.headers.get('allow')).toBe('POST');
      expectOpenAIError(await res.json(), 'method_not_allowed');
    }
    const health = await fetch(`${server.url}/health`, { method: 'POST' });
    expect(health.status).toBe(405);
    // fastify answers HEAD wherever GET is, so the 405 says so too.
    expect(health.headers.get('allow')).toBe('GET, HEAD');
    const value = parseScrape(await (await fetch(`${server.url}/metrics`)).text());
    expect(value('kmoe_requests_total{endpoint="completions",status="405"}')).toBe(4);
  });
});

describe('a maximal request', () => {
  it('leaves /health answering and a running stream flowing while it is refused', async () => {
    const reference = await greedy();
    const events: string[] = [];
    // A stream long enough to outlast the requests below.
    const streamRes = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL,
        prompt: 'The',
        max_tokens: 2000,
        temperature: 0,
        stream: true,
        kmoe: { ignore_eos: true },
      }),
    });
    const reader = streamRes.body!.getReader();
    let chunks = 0;
    let stop = false;
    const reading = (async () => {
      while (!stop) {
        const { done } = await reader.read();
        if (done) break;
        chunks++;
      }
    })();
    while (chunks < 3) await new Promise((r) => setTimeout(r, 10));
    // The most expensive prompt the length bound lets through: the longest text of the cheapest
    // tokens, which takes the tokenizer longest; then the largest body the server reads at all.
    const charBound = 4096 * 16;
    const chunksBefore = chunks;
    const big = postJson(JSON.stringify({ model: MODEL, prompt: ' '.repeat(charBound) })).then((r) => {
      events.push('big answered');
      return r;
    });
    const huge = postJson(JSON.stringify({ model: MODEL, prompt: 'x'.repeat(BODY_LIMIT - 100) })).then(
      (r) => {
        events.push('huge answered');
        return r;
      },
    );
    const health = await fetch(`${server.url}/health`);
    events.push('health answered');
    expect(health.status).toBe(200);
    const chunksDuring = chunks;
    const [bigRes, hugeRes] = await Promise.all([big, huge]);
    // The tokenizer thread was busy with the long prompt; the event loop was not.
    expect(events.indexOf('health answered')).toBeLessThan(events.indexOf('big answered'));
    expect(bigRes.status).toBe(400);
    expect(bigRes.body.error.code).toBe('context_length_exceeded');
    expect(hugeRes.status).toBe(400);
    expect(hugeRes.body.error.code).toBe('context_length_exceeded');
    // The stream kept producing while both were processed.
    expect(chunks).toBeGreaterThan(chunksBefore);
    expect(chunksDuring).toBeGreaterThanOrEqual(chunksBefore);
    stop = true;
    await reader.cancel();
    await reading;
    expect(await greedy()).toBe(reference);
  });
});
