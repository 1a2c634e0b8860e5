// Requests pipelined on one connection behind a request whose handler is still running, against an
// in-process ApiServer: bytes after a complete request that are not valid HTTP are the next
// request's parser error (a fresh request id, a parser access line), and the complete request is
// cancelled with its connection (499), not answered or logged as that error; a 417, answered
// outside fastify, still waits for the answer before it.

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiServer } from '../../../coordinator/server/api-server.js';
import { sendJson } from '../../../coordinator/server/http-io.js';
import { parseResponse } from '../../helpers/raw-http.js';
import { accessLine } from './access-log.js';
import { inProcessApiServer } from './in-process-api-server.js';

/** How long /slow's handler takes: long enough for everything pipelined behind it to be parsed. */
const SLOW_MS = 300;

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

/** Writes `bytes` on a fresh connection and returns everything read until the server closes it. */
async function exchange(bytes: string): Promise<Buffer> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  const closed = new Promise((r) => socket.once('close', r));
  await new Promise((r) => socket.once('connect', r));
  socket.write(bytes);
  await closed;
  return Buffer.concat(chunks);
}

describe('a parser error pipelined after a complete request', () => {
  it("is the next request's: a fresh id and a parser line; the complete one is cancelled as 499", async () => {
    const body = '{"a":1}';
    const received = await exchange(
      `POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: pipelined-a\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}` +
        'G@T /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
    );
    const res = parseResponse(received);
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ error: { code: 'bad_request_line' } });
    // Not the complete request's id: no request id was parsed for the bytes that failed.
    const id = res.headers['x-request-id'];
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(await accessLine(logText, id!)).toMatchObject({
      status: 400,
      errorCode: 'bad_request_line',
      parserCode: 'HPE_INVALID_METHOD',
    });
    // The complete request loses its connection: cancelled (its handler sees clientGone), logged as
    // the client's close with why, and not as the parser error.
    const line = await accessLine(logText, 'pipelined-a');
    expect(line).toMatchObject({
      method: 'POST',
      path: '/slow',
      status: 499,
      cancelled: `a request pipelined after it was not valid HTTP (HPE_INVALID_METHOD, answered as request ${id}); the connection closed`,
    });
    expect(line).not.toHaveProperty('error');
    expect(line).not.toHaveProperty('parserCode');
    expect(await handlerCancelled('pipelined-a')).toBe(true);
  });

  it('behind a stream already under way, ends the connection without writing into the stream', async () => {
    const { hostname, port } = new URL(url);
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    const closed = new Promise((r) => socket.once('close', r));
    await new Promise((r) => socket.once('connect', r));
    socket.write(
      'POST /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: pipelined-stream\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}',
    );
    // Once the stream has begun, the bytes after its request.
    socket.once('data', (d: Buffer) => {
      chunks.push(d);
      socket.on('data', (more: Buffer) => chunks.push(more));
      socket.write('G@T /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    });
    await closed;
    const received = Buffer.concat(chunks).toString('latin1');
    expect(received).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(received).not.toMatch(/HTTP\/1\.1 400/);
    expect(await accessLine(logText, 'pipelined-stream')).toMatchObject({
      status: 499,
      cancelled:
        'a request pipelined after it was not valid HTTP (HPE_INVALID_METHOD); the connection closed',
    });
    expect(await handlerCancelled('pipelined-stream')).toBe(true);
  });

  it("in a body after a complete request is the body's request's; the complete one is cancelled", async () => {
    const body = '{"a":1}';
    const received = await exchange(
      `POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: pipelined-first\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}` +
        'POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: pipelined-chunked\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
    );
    const res = parseResponse(received);
    expect(res.status).toBe(400);
    expect(res.headers['x-request-id']).toBe('pipelined-chunked');
    expect(await accessLine(logText, 'pipelined-chunked')).toMatchObject({
      status: 400,
      errorCode: 'bad_chunked_encoding',
    });
    expect(await accessLine(logText, 'pipelined-first')).toMatchObject({
      status: 499,
      cancelled: expect.stringMatching(/answered as request pipelined-chunked\); the connection closed$/),
    });
    expect(await handlerCancelled('pipelined-first')).toBe(true);
  });
});

describe('answers outside fastify pipelined after a request still running', () => {
  it('a 417 waits for the answer before it, then closes the connection', async () => {
    const body = '{"a":1}';
    const received = await exchange(
      `POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: before-417\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}` +
        'GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: pipelined-417\r\nexpect: 200-ok\r\n\r\n',
    );
    const first = parseResponse(received);
    expect(first.status).toBe(200);
    expect(first.headers['x-request-id']).toBe('before-417');
    const rest = received.subarray(
      received.indexOf('\r\n\r\n') + 4 + Number(first.headers['content-length']),
    );
    const second = parseResponse(rest);
    expect(second.status).toBe(417);
    expect(second.headers['x-request-id']).toBe('pipelined-417');
    expect(second.headers.connection).toBe('close');
    expect(await accessLine(logText, 'before-417')).toMatchObject({ status: 200 });
  });
});
