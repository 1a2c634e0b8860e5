// Fuzzing a real `kmoe serve --workers 0` over HTTP: fast-check generates JSON request bodies
// (shapes, sizes, types, nesting, routing specs, encodings, content types) sent with fetch (one
// at a time in some batches, 16 at once in others), raw
// requests over node:net (request lines, targets, versions, headers, chunked and plain bodies),
// and slow and aborted uploads. Every answer must be a success or an OpenAI-style JSON error with
// a stable code, never a 5xx. After each batch: the process is alive, /health answers, a greedy
// request gives the same text as before the fuzzing, and its resident memory stays bounded.

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ServeProcess, startServe } from '../coordinator/server/serve-process.js';
import { type RawResponse, rawRequest } from '../helpers/raw-http.js';
import { batchSizes, caseTimeout, expectBoundedRss, fuzzCases, fuzzSeed, rssMiB } from './fuzz-budget.js';

const MODEL = 'tiny-mixtral';
/** Cases per run in `npm test`; most are cheap requests that fail validation. */
const CASES = fuzzCases(9000);
const JSON_CASES = Math.round(CASES * 0.45);
const RAW_CASES = CASES - JSON_CASES;
const UPLOAD_CASES = Math.max(20, Math.round(CASES / 150));
const BATCHES = 6;

let server: ServeProcess;
let seed: number;
let reference: string;
let baselineRss: number;

async function greedy(): Promise<string> {
  const res = await fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, prompt: 'def f():', max_tokens: 8, temperature: 0 }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { choices: { text: string }[] }).choices[0]!.text;
}

/** Alive, answering, the same greedy text, bounded memory. */
async function checkHealthy(what: string): Promise<void> {
  expect(
    server.child.exitCode,
    `${what}: server exited; stderr tail:\n${server.stderr().slice(-3000)}`,
  ).toBeNull();
  const health = await fetch(`${server.url}/health`);
  expect(health.status).toBe(200);
  expect(await greedy(), what).toBe(reference);
  expectBoundedRss(server.child.pid!, baselineRss, what);
}

beforeAll(async () => {
  server = await startServe(['--workers', '0']);
  seed = fuzzSeed();
  reference = await greedy();
  // Warm-up: a few requests of each kind, so the baseline includes JIT and pools.
  for (let i = 0; i < 20; i++) await greedy();
  baselineRss = rssMiB(server.child.pid!);
});

afterAll(async () => {
  const counts = [...statuses.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}: ${n}`);
  console.log(`fuzz answers by status (0 = none possible): ${counts.join(', ')}`);
  expect(await server?.stop()).toBe(0);
});

type ErrorBody = { error: { message: unknown; type: unknown; param: unknown; code: unknown } };

/** The invariant of every answer: a 2xx, or a 4xx whose body is an OpenAI-style error with a code. */
function checkAnswer(status: number, contentType: string, body: string, what: () => string): void {
  expect(status, `${what()}\nanswer: ${status} ${body.slice(0, 500)}`).toBeLessThan(500);
  if (status >= 400) {
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      throw new Error(`${what()}\nanswer ${status} is not JSON: ${body.slice(0, 500)}`);
    }
    const error = (json as ErrorBody).error;
    expect(typeof error?.message, what()).toBe('string');
    expect(typeof error?.type, what()).toBe('string');
    expect(typeof error?.code === 'string' && error.code !== '', `${what()}\n${body}`).toBe(true);
    expect(error.param === null || typeof error.param === 'string', what()).toBe(true);
  } else if (contentType.startsWith('text/event-stream')) {
    expect(body.trimEnd().endsWith('data: [DONE]'), `${what()}\nstream: ${body.slice(-300)}`).toBe(true);
  }
}

/** Answers by status over the whole run, printed at the end (docs/serving.md reports them). */
const statuses = new Map<number, number>();

function tally(status: number): void {
  statuses.set(status, (statuses.get(status) ?? 0) + 1);
}

// ---------------------------------------------------------------- JSON bodies sent with fetch

const routingArb = fc.oneof(
  fc.constantFrom(
    'topk:1',
    'topk:2',
    'entropy:1,2@1.4',
    'topk:9',
    'topk:0',
    'magic:1',
    '',
    ' ',
    'topk:',
    '/etc/passwd',
  ),
  fc.stringMatching(/^[a-z]{1,8}:[0-9,@.:-]{0,12}$/),
  fc.integer({ min: 500, max: 200_000 }).map((n) => `entropy:${'1,'.repeat(n)}2@1`),
  fc.string({ maxLength: 40 }),
  fc.record({ kmoeRoutingProfile: fc.constantFrom(1, 2, '1'), policy: fc.jsonValue({ maxDepth: 3 }) }),
  fc.jsonValue({ maxDepth: 4 }),
);

const promptArb = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 60 }) },
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.array(fc.integer({ min: -3, max: 5000 }), { maxLength: 24 }),
  fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
  fc.array(fc.array(fc.nat(5000), { maxLength: 6 }), { maxLength: 2 }),
  fc.jsonValue({ maxDepth: 3 }),
);

const numberish = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.double(),
  fc.constantFrom(null, 'high', true, 1e308, -0, 2 ** 53),
);

const messagesArb = fc.oneof(
  fc.array(
    fc.record(
      {
        role: fc.oneof(
          fc.constantFrom('system', 'user', 'assistant', 'developer', 'tool'),
          fc.string({ maxLength: 6 }),
        ),
        content: fc.oneof(fc.string({ maxLength: 30 }), fc.constant(null), fc.jsonValue({ maxDepth: 2 })),
      },
      { requiredKeys: [] },
    ),
    { maxLength: 4 },
  ),
  fc.jsonValue({ maxDepth: 2 }),
);

const bodyArb = fc.record(
  {
    // Mostly wrong, so most cases are refused cheaply; the right one lets some requests generate.
    model: fc.oneof(
      { weight: 2, arbitrary: fc.constant(MODEL) },
      fc.string({ maxLength: 12 }),
      fc.constant(null),
    ),
    prompt: promptArb,
    messages: messagesArb,
    // Small when valid, so the requests that do generate stay cheap.
    max_tokens: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(1, 2, 3) }, numberish, fc.constant(5000)),
    max_completion_tokens: fc.oneof(fc.constantFrom(1, 2), numberish),
    temperature: fc.oneof(fc.constantFrom(0, 1), numberish),
    top_p: numberish,
    seed: numberish,
    stop: fc.oneof(
      fc.string({ maxLength: 4 }),
      fc.array(fc.string({ maxLength: 4 }), { maxLength: 6 }),
      numberish,
    ),
    stream: fc.oneof(fc.boolean(), numberish),
    stream_options: fc.oneof(fc.record({ include_usage: fc.boolean() }), fc.jsonValue({ maxDepth: 2 })),
    n: numberish,
    logprobs: numberish,
    echo: fc.oneof(fc.boolean(), numberish),
    tools: fc.jsonValue({ maxDepth: 2 }),
    kmoe: fc.oneof(
      {
        weight: 3,
        arbitrary: fc.record(
          { routing: routingArb, ignore_eos: fc.oneof(fc.boolean(), numberish) },
          { requiredKeys: [] },
        ),
      },
      fc.jsonValue({ maxDepth: 3 }),
    ),
    user: fc.string({ maxLength: 10 }),
  },
  { requiredKeys: [] },
);

/** How the body goes on the wire: as is, mangled, deeply nested, huge, or under another content type. */
const encodingArb = fc.oneof(
  { weight: 10, arbitrary: fc.constant({ kind: 'json' as const }) },
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('garbage' as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({ kind: fc.constant('bom' as const) }),
  fc.record({
    kind: fc.constant('nest' as const),
    depth: fc.integer({ min: 1, max: 5000 }),
    array: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('big' as const), chars: fc.integer({ min: 70_000, max: 400_000 }) }),
  fc.record({
    kind: fc.constant('type' as const),
    contentType: fc.oneof(
      fc.constantFrom(
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/json; charset=utf-8',
        'APPLICATION/JSON',
        'application/json;;',
        'application/jsonx',
        '',
      ),
      fc.string({ maxLength: 20 }),
    ),
  }),
);

const targetArb = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom('/v1/completions', '/v1/chat/completions') },
  fc.constantFrom(
    '/v1/models',
    '/health',
    '/ready',
    '/metrics',
    '/v1/completions/',
    '/v1/completions?x=1',
    '/',
  ),
  fc.webPath(),
);

const methodArb = fc.oneof(
  { weight: 12, arbitrary: fc.constant('POST') },
  fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH'),
);

const jsonCaseArb = fc.record({ body: bodyArb, encoding: encodingArb, target: targetArb, method: methodArb });
type JsonCase = typeof jsonCaseArb extends fc.Arbitrary<infer T> ? T : never;

function encode(c: JsonCase): { body: string | Uint8Array; contentType: string | undefined } {
  const text = JSON.stringify(c.body);
  const e = c.encoding;
  switch (e.kind) {
    case 'json':
      return { body: text, contentType: 'application/json' };
    case 'truncate':
      return { body: text.slice(0, e.at % (text.length + 1)), contentType: 'application/json' };
    case 'garbage':
      return { body: Buffer.concat([Buffer.from(text), e.bytes]), contentType: 'application/json' };
    case 'bom':
      return { body: `\uFEFF${text}`, contentType: 'application/json' };
    case 'nest': {
      const [open, close] = e.array ? ['[', ']'] : ['{"a":', '}'];
      const deep = `${open.repeat(e.depth)}1${close.repeat(e.depth)}`;
      return {
        body: `{"model":"${MODEL}","prompt":"x","kmoe":{"routing":${deep}}}`,
        contentType: 'application/json',
      };
    }
    case 'big':
      return {
        body: JSON.stringify({ ...c.body, prompt: 'x y'.repeat(Math.ceil(e.chars / 3)) }),
        contentType: 'application/json',
      };
    case 'type':
      return { body: text, contentType: e.contentType === '' ? undefined : e.contentType };
  }
}

async function sendJsonCase(c: JsonCase): Promise<void> {
  const { body, contentType } = encode(c);
  const what = () => `${c.method} ${c.target} (${contentType}) ${String(body).slice(0, 300)}`;
  let res: Response;
  try {
    res = await fetch(`${server.url}${c.target}`, {
      method: c.method,
      headers: contentType === undefined ? {} : { 'content-type': contentType },
      ...(c.method === 'GET' ? {} : { body }),
    });
  } catch (err) {
    throw new Error(`${what()}\nfetch failed: ${(err as Error).message}`);
  }
  tally(res.status);
  checkAnswer(res.status, res.headers.get('content-type') ?? '', await res.text(), what);
}

// ------------------------------------------------------------ raw requests over node:net

const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/);

const rawTargetArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('/v1/completions', '/health', '/metrics', '/v1/models', '/ready') },
  fc.constantFrom(
    '*',
    'example.com:443',
    'http://x/health',
    'http://[::1',
    'http://x:99999/',
    '//health',
    '/%',
    '/%zz',
    '/health%00',
  ),
  fc.webUrl(),
  fc.webPath(),
  fc.string({ maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.integer({ min: 1, max: 20_000 }).map((n) => `/${'a'.repeat(n)}`),
);

const headerArb = fc.oneof(
  fc.tuple(
    fc.constantFrom(
      'content-type',
      'content-length',
      'transfer-encoding',
      'host',
      'x-request-id',
      'expect',
      'connection',
      'upgrade',
      'content-encoding',
    ),
    fc.oneof(
      fc.constantFrom(
        'application/json',
        'chunked',
        'gzip',
        '0',
        '-1',
        '5',
        '99999999999',
        '100-continue',
        'close',
        'keep-alive',
        'websocket',
        'chunked, chunked',
        'identity',
      ),
      fc.string({ maxLength: 20 }),
    ),
  ),
  fc.tuple(token, fc.string({ maxLength: 30 })),
  fc.tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 })),
  fc.integer({ min: 1, max: 40_000 }).map((n) => ['x-big', 'v'.repeat(n)] as [string, string]),
);

const rawBodyArb = fc.oneof(
  fc.constant(''),
  fc.constant(`{"model":"${MODEL}","prompt":"x","max_tokens":1}`),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
  // Chunked encodings, well formed or not.
  fc
    .array(fc.string({ maxLength: 20 }), { maxLength: 4 })
    .map(
      (parts) => `${parts.map((p) => `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`).join('')}0\r\n\r\n`,
    ),
  fc.constantFrom(
    'zz\r\nab\r\n0\r\n\r\n',
    '5\r\nab\r\n0\r\n\r\n',
    'ffffffffffffffff\r\n',
    '3;ext=1\r\nabc\r\n0\r\n\r\n',
  ),
);

const rawCaseArb = fc.record({
  method: fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom('GET', 'POST') },
    fc.constantFrom('PUT', 'HEAD', 'OPTIONS', 'CONNECT', 'TRACE', 'PROPFIND', 'FOO', '', 'get'),
    token,
  ),
  target: rawTargetArb,
  version: fc.oneof(
    { weight: 4, arbitrary: fc.constant('HTTP/1.1') },
    fc.constantFrom('HTTP/1.0', 'HTTP/2.0', 'HTTP/0.9', 'HTTP/1.1x', '', 'http/1.1', 'HTTP/1.2'),
  ),
  headers: fc.array(headerArb, { maxLength: 5 }),
  contentType: fc.oneof(fc.constant(true), fc.constant(false)),
  body: rawBodyArb,
  withLength: fc.boolean(),
  eol: fc.oneof({ weight: 6, arbitrary: fc.constant('\r\n') }, fc.constant('\n')),
});
type RawCase = typeof rawCaseArb extends fc.Arbitrary<infer T> ? T : never;

function rawBytes(c: RawCase): string {
  const lines = [`${c.method} ${c.target} ${c.version}`.trim(), 'host: localhost'];
  if (c.contentType) lines.push('content-type: application/json');
  if (c.withLength) lines.push(`content-length: ${Buffer.byteLength(c.body, 'latin1')}`);
  for (const [name, value] of c.headers) lines.push(`${name}: ${value}`);
  return `${lines.join(c.eol)}${c.eol}${c.eol}${c.body}`;
}

function checkRaw(res: RawResponse, request: string, method: string): void {
  tally(res.status);
  // No answer is allowed where none is possible (the request is incomplete when the connection
  // ends); any answer must be well formed. A HEAD answer has no body by definition: the bytes after
  // its head are the next response's (bytes after the HEAD that are not HTTP get their 400).
  if (res.status === 0) return;
  if (method === 'HEAD') {
    expect(res.status, JSON.stringify(request.slice(0, 400))).toBeLessThan(500);
    return;
  }
  checkAnswer(res.status, res.headers['content-type'] ?? '', res.body, () =>
    JSON.stringify(request.slice(0, 400)),
  );
}

// ------------------------------------------------------------------------------ the runs

describe('fuzzing kmoe serve', () => {
  it(
    `answers ${JSON_CASES} generated JSON requests with successes or JSON errors`,
    async () => {
      const sizes = batchSizes(JSON_CASES, BATCHES);
      for (const [b, numRuns] of sizes.entries()) {
        if (b % 2 === 0) {
          // Sequential, with fast-check shrinking a failure to a minimal request.
          await fc.assert(
            fc.asyncProperty(jsonCaseArb, (c) => sendJsonCase(c)),
            { numRuns, seed: seed + b, endOnFailure: true },
          );
        } else {
          // 16 at a time: valid ones are batched by the scheduler, refusals interleave with them.
          const cases = fc.sample(jsonCaseArb, { numRuns, seed: seed + b });
          let next = 0;
          await Promise.all(
            Array.from({ length: 16 }, async () => {
              while (next < cases.length) await sendJsonCase(cases[next++]!);
            }),
          );
        }
        await checkHealthy(`JSON batch ${b + 1}/${sizes.length} (seed ${seed + b})`);
      }
    },
    caseTimeout(JSON_CASES),
  );

  it(
    `answers ${RAW_CASES} raw requests with well-formed answers`,
    async () => {
      const sizes = batchSizes(RAW_CASES, BATCHES);
      for (const [b, numRuns] of sizes.entries()) {
        await fc.assert(
          fc.asyncProperty(rawCaseArb, async (c) => {
            const request = rawBytes(c);
            const res = await rawRequest(server.url, [request], { endAfterWrite: true, timeoutMs: 5000 });
            checkRaw(res, request, c.method);
          }),
          { numRuns, seed: seed + 100 + b, endOnFailure: true },
        );
        await checkHealthy(`raw batch ${b + 1}/${sizes.length} (seed ${seed + 100 + b})`);
      }
    },
    caseTimeout(RAW_CASES),
  );

  it(
    `survives ${UPLOAD_CASES} slow and aborted uploads`,
    async () => {
      const uploads = fc.sample(
        fc.record({
          parts: fc.integer({ min: 2, max: 6 }),
          gapMs: fc.integer({ min: 5, max: 60 }),
          abortAfter: fc.option(fc.integer({ min: 0, max: 5 })),
          declared: fc.integer({ min: 1, max: 1_000_000 }),
        }),
        { numRuns: UPLOAD_CASES, seed: seed + 200 },
      );
      // In parallel groups: each case mostly waits.
      for (let i = 0; i < uploads.length; i += 20) {
        await Promise.all(
          uploads.slice(i, i + 20).map(async (u) => {
            const body = JSON.stringify({ model: MODEL, prompt: 'p'.repeat(u.declared) }).slice(0, 4096);
            const head = `POST /v1/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${u.abortAfter === null ? body.length : u.declared}\r\n\r\n`;
            const step = Math.ceil(body.length / u.parts);
            const parts = [
              head,
              ...Array.from({ length: u.parts }, (_, k) => body.slice(k * step, (k + 1) * step)),
            ];
            const cut = u.abortAfter === null ? parts : parts.slice(0, 1 + (u.abortAfter % u.parts));
            const res = await rawRequest(server.url, cut, {
              gapMs: u.gapMs,
              abort: u.abortAfter !== null,
              timeoutMs: 10_000,
            });
            if (u.abortAfter === null) {
              // Complete, just slow: a normal answer (a 400 for a prompt too long for the context).
              expect(res.status).toBeGreaterThan(0);
              checkAnswer(res.status, res.headers['content-type'] ?? '', res.body, () => head);
            }
          }),
        );
      }
      await checkHealthy('slow and aborted uploads');
      // The aborted ones were counted as client disconnects, never as server errors.
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).not.toMatch(/kmoe_requests_total\{endpoint="[^"]*",status="5\d\d"\}/);
    },
    caseTimeout(UPLOAD_CASES * 20),
  );
});
