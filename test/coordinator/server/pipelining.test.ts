// Requests pipelined on one connection behind requests whose handlers are still running, against an
// in-process ApiServer: HTTP/1.1 answers in request order, so an answer written outside fastify (a
// parser error's, CONNECT's 405, the 417) comes after the earlier requests' complete answers, which
// are neither cancelled nor cut short; bytes after a complete request that are not valid HTTP are
// the next request's error (a fresh request id, a parser access line), after which the connection
// closes; so when the client half-closes after the bad bytes (a FIN cancels a generation instead).
// Every test reads the wire bytes until the server closes the connection.

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiServer } from '../../../coordinator/server/api-server.js';
import { sendJson } from '../../../coordinator/server/http-io.js';
import { parseResponses, type RawResponse } from '../../helpers/raw-http.js';
import { accessLine, logRecords } from './access-log.js';
import { inProcessApiServer } from './in-process-api-server.js';

/** How long /slow's handler takes: long enough for everything pipelined behind it to be parsed. */
const SLOW_MS = 300;
/** How long /generate runs unless its client goes: far longer than its client takes to send a FIN. */
const GENERATION_MS = 10_000;

let api: ApiServer;
let url: string;
let logText: () => string;
/** Whether each /slow request's clientGone was aborted when its handler ended, by request id. */
const cancelled = new Map<string, boolean>();

beforeAll(async () => {
  ({ api, url, logText } = await inProcessApiServer({
    '/slow': {
      name: 'slow',
      methods: {
        POST: async ({ requestId, req, res, clientGone }) => {
          await new Promise((r) => setTimeout(r, SLOW_MS));
          cancelled.set(requestId, clientGone.aborted);
          sendJson(res, 200, req.body);
        },
      },
    },
    '/generate': {
      name: 'generate',
      generates: true,
      methods: {
        // A generation runs until its client is gone (a FIN cancels it), or answers after a while.
        POST: async ({ requestId, req, res, clientGone }) => {
          await new Promise((r) => {
            const timer = setTimeout(r, GENERATION_MS);
            clientGone.addEventListener('abort', () => r(clearTimeout(timer)), { once: true });
          });
          cancelled.set(requestId, clientGone.aborted);
          if (!clientGone.aborted) sendJson(res, 200, req.body);
        },
      },
    },
    '/stream': {
      name: 'stream',
      methods: {
        POST: async ({ requestId, res, clientGone }) => {
          res.hijack();
          res.raw.writeHead(200, { 'content-type': 'text/event-stream' });
          res.raw.write('data: first\n\n');
          await new Promise((r) => setTimeout(r, SLOW_MS));
          cancelled.set(requestId, clientGone.aborted);
          res.raw.end('data: [DONE]\n\n');
        },
      },
    },
  }));
});

afterAll(async () => {
  await api?.close();
});

/** The request's handler has ended: whether its clientGone was aborted by then. */
async function handlerCancelled(requestId: string): Promise<boolean | undefined> {
  for (let i = 0; i < 100 && !cancelled.has(requestId); i++) await new Promise((r) => setTimeout(r, 20));
  return cancelled.get(requestId);
}

/** A complete POST of `body` as JSON, with `headers` (lines ending in \r\n) before the body. */
function post(path: string, id: string, body: string, headers = ''): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: ${id}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n${headers}\r\n${body}`;
}

/** A raw connection to the server: what it has read so far, and when the server closed it. */
async function connect(): Promise<{
  readonly socket: net.Socket;
  readonly received: () => Buffer;
  readonly closed: Promise<unknown>;
}> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  const closed = new Promise((r) => socket.once('close', r));
  await new Promise((r) => socket.once('connect', r));
  return { socket, received: () => Buffer.concat(chunks), closed };
}

/** Writes `bytes` on a fresh connection and returns the responses read until the server closes it. */
async function exchange(bytes: string): Promise<RawResponse[]> {
  const connection = await connect();
  connection.socket.write(bytes);
  await connection.closed;
  return parseResponses(connection.received());
}

/** Waits until `count` whole responses have arrived on the connection. */
async function responsesArrived(received: () => Buffer, count: number): Promise<void> {
  for (let i = 0; i < 250; i++) {
    try {
      if (parseResponses(received()).length >= count) return;
    } catch {
      // A response still arriving.
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${count} responses did not arrive: ${received().toString('latin1')}`);
}

/** Parser access lines: no request was parsed for them, so none has an id a test knows. */
function parserLines(): number {
  return logRecords(logText()).filter((r) => r['msg'] === 'request' && r['parserCode'] !== undefined).length;
}

describe('a parser error pipelined after complete requests', () => {
  it("waits for the earlier requests' whole answers, in order, then is answered under a new id and closes", async () => {
    const responses = await exchange(
      post('/slow', 'ordered-a', '{"a":1}') +
        post('/slow', 'ordered-b', '{"b":2}') +
        'G@T /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
    );
    expect(responses.map((r) => r.status)).toEqual([200, 200, 400]);
    const [a, b, error] = responses as [RawResponse, RawResponse, RawResponse];
    expect(a.headers['x-request-id']).toBe('ordered-a');
    expect(a.json).toEqual({ a: 1 });
    expect(b.headers['x-request-id']).toBe('ordered-b');
    expect(b.json).toEqual({ b: 2 });
    expect(error.json).toMatchObject({ error: { code: 'bad_request_line' } });
    expect(error.headers.connection).toBe('close');
    // Not a complete request's id: no request id was parsed for the bytes that failed.
    const id = error.headers['x-request-id'];
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(await accessLine(logText, id!)).toMatchObject({
      status: 400,
      errorCode: 'bad_request_line',
      parserCode: 'HPE_INVALID_METHOD',
    });
    // The complete requests ran to the end and are logged as answered, not as the parser error.
    for (const earlier of ['ordered-a', 'ordered-b']) {
      const line = await accessLine(logText, earlier);
      expect(line).toMatchObject({ method: 'POST', path: '/slow', status: 200 });
      expect(line).not.toHaveProperty('cancelled');
      expect(line).not.toHaveProperty('parserCode');
      expect(await handlerCancelled(earlier)).toBe(false);
    }
  });

  it('behind a stream under way, follows the whole stream', async () => {
    const connection = await connect();
    connection.socket.write(post('/stream', 'ordered-stream', '{}'));
    // Once the stream has begun, the bytes after its request.
    connection.socket.once('data', () =>
      connection.socket.write('G@T /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'),
    );
    await connection.closed;
    const responses = parseResponses(connection.received());
    expect(responses.map((r) => r.status)).toEqual([200, 400]);
    expect(responses[0]!.headers['x-request-id']).toBe('ordered-stream');
    expect(responses[0]!.body).toBe('data: first\n\ndata: [DONE]\n\n');
    expect(responses[1]!.json).toMatchObject({ error: { code: 'bad_request_line' } });
    expect(await accessLine(logText, 'ordered-stream')).toMatchObject({ status: 200 });
    expect(await handlerCancelled('ordered-stream')).toBe(false);
  });

  it("in a body after a complete request is the body's request's, answered after the complete one", async () => {
    const responses = await exchange(
      post('/slow', 'ordered-first', '{"a":1}') +
        'POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: ordered-chunked\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
    );
    expect(responses.map((r) => r.status)).toEqual([200, 400]);
    expect(responses[0]!.headers['x-request-id']).toBe('ordered-first');
    expect(responses[0]!.json).toEqual({ a: 1 });
    expect(responses[1]!.headers['x-request-id']).toBe('ordered-chunked');
    expect(responses[1]!.json).toMatchObject({ error: { code: 'bad_chunked_encoding' } });
    expect(await accessLine(logText, 'ordered-chunked')).toMatchObject({
      status: 400,
      errorCode: 'bad_chunked_encoding',
      parserCode: 'HPE_INVALID_CHUNK_SIZE',
    });
    expect(await accessLine(logText, 'ordered-first')).toMatchObject({ status: 200 });
    expect(await handlerCancelled('ordered-first')).toBe(false);
  });

  it('after an answer already written on a keep-alive connection, is answered too', async () => {
    const connection = await connect();
    connection.socket.write(post('/slow', 'answered-before', '{"a":1}'));
    await responsesArrived(connection.received, 1);
    connection.socket.write('G@T /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await connection.closed;
    const responses = parseResponses(connection.received());
    expect(responses.map((r) => r.status)).toEqual([200, 400]);
    expect(responses[1]!.json).toMatchObject({ error: { code: 'bad_request_line' } });
    expect(responses[1]!.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('after an answer that closes the connection, gets none', async () => {
    // (llhttp refuses any byte after a request that said `connection: close`: HPE_CLOSED_CONNECTION.)
    const before = parserLines();
    const responses = await exchange(
      post('/slow', 'closing-first', '{"a":1}', 'connection: close\r\n') +
        'G@T /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
    );
    expect(responses.map((r) => r.status)).toEqual([200]);
    expect(responses[0]!.json).toEqual({ a: 1 });
    expect(await accessLine(logText, 'closing-first')).toMatchObject({ status: 200 });
    // Nothing was answered for the bytes that failed, so nothing is logged for them.
    expect(parserLines()).toBe(before);
  });

  it('in the body of a request that already has its answer, adds none', async () => {
    const connection = await connect();
    // Refused for its content type before its body is read.
    connection.socket.write(
      'POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: own-answer\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n',
    );
    await responsesArrived(connection.received, 1);
    connection.socket.write('zz\r\n{}\r\n0\r\n\r\n');
    await connection.closed;
    const responses = parseResponses(connection.received());
    expect(responses.map((r) => r.status)).toEqual([415]);
    expect(await accessLine(logText, 'own-answer')).toMatchObject({
      status: 415,
      errorCode: 'unsupported_media_type',
    });
  });
});

describe('bad bytes followed by the client ending its side (a half-close)', () => {
  /** A request line that is not HTTP, as the bytes that fail. */
  const BAD = 'G@T /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';

  /** Writes `bytes` and the FIN on a fresh connection; the responses read until the server closes it. */
  async function halfClosed(bytes: string): Promise<RawResponse[]> {
    const connection = await connect();
    connection.socket.end(bytes);
    await connection.closed;
    return parseResponses(connection.received());
  }

  /** The 400 for BAD: the whole JSON error, a fresh id, `connection: close`, and its access line. */
  async function expectBadRequestLine(error: RawResponse): Promise<void> {
    expect(error.json).toEqual({
      error: {
        message: 'the request line is malformed',
        type: 'invalid_request_error',
        param: null,
        code: 'bad_request_line',
      },
    });
    expect(error.headers.connection).toBe('close');
    const id = error.headers['x-request-id'];
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(await accessLine(logText, id!)).toMatchObject({ status: 400, parserCode: 'HPE_INVALID_METHOD' });
  }

  it('behind a request still running, get its whole answer, then the 400, then the close', async () => {
    // The FIN arrives while /slow's handler runs (Node would make that answer the connection's
    // last): with the bytes, and on its own once they have been read.
    for (const [id, finLater] of [
      ['fin-behind', false],
      ['fin-behind-later', true],
    ] as const) {
      const connection = await connect();
      const bytes = post('/slow', id, '{"a":1}') + BAD;
      if (finLater) {
        connection.socket.write(bytes);
        await new Promise((r) => setTimeout(r, SLOW_MS / 3));
        connection.socket.end();
      } else connection.socket.end(bytes);
      await connection.closed;
      const responses = parseResponses(connection.received());
      expect(
        responses.map((r) => r.status),
        id,
      ).toEqual([200, 400]);
      expect(responses[0]!.headers['x-request-id']).toBe(id);
      expect(responses[0]!.json).toEqual({ a: 1 });
      await expectBadRequestLine(responses[1]!);
      const line = await accessLine(logText, id);
      expect(line).toMatchObject({ method: 'POST', path: '/slow', status: 200 });
      expect(line).not.toHaveProperty('cancelled');
      expect(await handlerCancelled(id)).toBe(false);
    }
  });

  it('behind a generation still running, get nothing: the FIN cancels it as a disconnect', async () => {
    const before = parserLines();
    const responses = await halfClosed(post('/generate', 'fin-generation', '{"a":1}') + BAD);
    expect(responses).toEqual([]);
    expect(await handlerCancelled('fin-generation')).toBe(true);
    expect(await accessLine(logText, 'fin-generation')).toMatchObject({ path: '/generate', status: 499 });
    // Nothing was answered for the bytes that failed, so nothing is logged for them.
    expect(parserLines()).toBe(before);
  });

  it('with no request running, get the 400, then the close', async () => {
    const alone = await halfClosed(BAD);
    expect(alone.map((r) => r.status)).toEqual([400]);
    await expectBadRequestLine(alone[0]!);
    // After an answer already written on the connection.
    const connection = await connect();
    connection.socket.write(post('/slow', 'fin-after-answer', '{"b":2}'));
    await responsesArrived(connection.received, 1);
    connection.socket.end(BAD);
    await connection.closed;
    const responses = parseResponses(connection.received());
    expect(responses.map((r) => r.status)).toEqual([200, 400]);
    expect(responses[0]!.json).toEqual({ b: 2 });
    await expectBadRequestLine(responses[1]!);
  });
});

describe('answers outside fastify pipelined after requests still running', () => {
  it('a 417 waits for the answer before it, then closes the connection', async () => {
    const responses = await exchange(
      post('/slow', 'before-417', '{"a":1}') +
        'GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: pipelined-417\r\nexpect: 200-ok\r\n\r\n',
    );
    expect(responses.map((r) => r.status)).toEqual([200, 417]);
    expect(responses[0]!.headers['x-request-id']).toBe('before-417');
    expect(responses[0]!.json).toEqual({ a: 1 });
    expect(responses[1]!.headers['x-request-id']).toBe('pipelined-417');
    expect(responses[1]!.headers.connection).toBe('close');
    expect(await accessLine(logText, 'before-417')).toMatchObject({ status: 200 });
  });

  it("CONNECT's 405 waits for the answers before it, in order, then closes the connection", async () => {
    const responses = await exchange(
      post('/slow', 'before-connect-a', '{"a":1}') +
        post('/slow', 'before-connect-b', '{"b":2}') +
        'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nx-request-id: pipelined-connect\r\n\r\n',
    );
    expect(responses.map((r) => r.status)).toEqual([200, 200, 405]);
    expect(responses[0]!.headers['x-request-id']).toBe('before-connect-a');
    expect(responses[0]!.json).toEqual({ a: 1 });
    expect(responses[1]!.headers['x-request-id']).toBe('before-connect-b');
    expect(responses[1]!.json).toEqual({ b: 2 });
    expect(responses[2]!.headers['x-request-id']).toBe('pipelined-connect');
    expect(responses[2]!.headers.connection).toBe('close');
    expect(responses[2]!.json).toMatchObject({ error: { code: 'method_not_allowed' } });
    for (const earlier of ['before-connect-a', 'before-connect-b']) {
      expect(await accessLine(logText, earlier)).toMatchObject({ status: 200 });
      expect(await handlerCancelled(earlier)).toBe(false);
    }
    expect(await accessLine(logText, 'pipelined-connect')).toMatchObject({ method: 'CONNECT', status: 405 });
  });

  it('a CONNECT whose client leaves before its turn gets nothing and is logged as cut short', async () => {
    const connection = await connect();
    connection.socket.on('error', () => undefined);
    connection.socket.write(
      post('/slow', 'before-reset', '{"a":1}') +
        'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nx-request-id: connect-reset\r\n\r\n',
    );
    // Parsed well before /slow answers; then the client resets the connection.
    await new Promise((r) => setTimeout(r, SLOW_MS / 3));
    connection.socket.resetAndDestroy();
    await connection.closed;
    expect(connection.received().length).toBe(0);
    expect(await accessLine(logText, 'connect-reset')).toMatchObject({
      method: 'CONNECT',
      status: 499,
      cancelled: 'the connection closed before its answer was due',
    });
    expect(await accessLine(logText, 'before-reset')).toMatchObject({ status: 499 });
    expect(await handlerCancelled('before-reset')).toBe(true);
  });
});

describe('a timeout pipelined after a request still running', () => {
  /** The time limit for a request's headers here, and how long the test leaves it to fire. */
  const HEADERS_MS = 200;
  const TIMEOUT_FIRED_MS = 4000;
  let timed: { readonly api: ApiServer; readonly url: string; readonly logText: () => string };
  /** Answers the requests /held is holding. */
  const held: (() => void)[] = [];
  const release = () => {
    for (const answer of held.splice(0)) answer();
  };
  beforeAll(async () => {
    timed = await inProcessApiServer(
      {
        '/held': {
          name: 'held',
          methods: {
            POST: async ({ req, res }) => {
              await new Promise<void>((r) => held.push(r));
              sendJson(res, 200, req.body);
            },
          },
        },
      },
      { headersTimeoutMs: HEADERS_MS },
    );
  });
  afterAll(async () => {
    // A request parsed after the 408 was written, cancelled with its connection, still holds.
    release();
    await timed?.api.close();
  });

  it("is answered after that request's answer, and nothing sent after the timeout is answered before it", async () => {
    const { hostname, port } = new URL(timed.url);
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    const closed = new Promise((r) => socket.once('close', r));
    await new Promise((r) => socket.once('connect', r));
    socket.write(`${post('/held', 'held-first', '{"a":1}')}POST /held HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
    // Node checks the limit every second: by now the stalled headers have had their 408.
    await new Promise((r) => setTimeout(r, TIMEOUT_FIRED_MS));
    // The rest of them, and another request: not read while the 408 waits (they would be answered
    // ahead of it), nor answered after it (the connection closes with it).
    socket.write(
      `x-request-id: held-late\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}${post('/held', 'held-later', '{}')}`,
    );
    await new Promise((r) => setTimeout(r, 100));
    release();
    await closed;
    const responses = parseResponses(Buffer.concat(chunks));
    expect(responses.map((r) => r.status)).toEqual([200, 408]);
    expect(responses[0]!.headers['x-request-id']).toBe('held-first');
    expect(responses[0]!.json).toEqual({ a: 1 });
    expect(responses[1]!.json).toMatchObject({
      error: {
        code: 'request_timeout',
        message: `the request headers did not arrive within ${HEADERS_MS / 1000} s`,
      },
    });
    expect(await accessLine(timed.logText, 'held-first')).toMatchObject({ status: 200 });
  });
});
