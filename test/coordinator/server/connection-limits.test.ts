// Connections that hold a slot without sending a request: a real `kmoe serve` closes connections
// over --max-connections-per-client from one address at once (other addresses are served, and the
// address again once one of its connections closes), and an ApiServer closes a connection whose
// request headers do not arrive within the headers' limit with a 408, while a body may take longer.

import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiServer } from '../../../coordinator/server/api-server.js';
import { sendJson } from '../../../coordinator/server/http-io.js';
import { clientOf } from '../../../shared/runtime/client-connections.js';
import { parseScrape, scrape } from '../../helpers/prometheus.js';
import { parseResponse, rawRequest } from '../../helpers/raw-http.js';
import { accessLine } from './access-log.js';
import { inProcessApiServer } from './in-process-api-server.js';
import { type ServeProcess, startServe } from './serve-process.js';

const PER_CLIENT = 3;

/**
 * A keep-alive GET /health from `localAddress`: resolves with the socket once answered, or null
 * if the server closed it first.
 */
function holdConnection(url: string, localAddress = '127.0.0.1'): Promise<net.Socket | null> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ port: Number(port), host: hostname, localAddress });
    socket.once('error', () => undefined);
    socket.once('close', () => resolve(null));
    socket.once('connect', () => socket.write(`GET /health HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`));
    socket.once('data', (d: Buffer) => {
      if (d.toString('latin1').startsWith('HTTP/1.1 200')) resolve(socket);
    });
  });
}

/** The body of a GET from `localAddress` on a connection used once. */
function getFrom(url: string, localAddress: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { localAddress, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => {
          body += d;
        });
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

describe('kmoe serve --max-connections-per-client', () => {
  let server: ServeProcess;
  beforeAll(async () => {
    server = await startServe(['--workers', '0', '--max-connections-per-client', String(PER_CLIENT)]);
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it('closes a connection over the cap from one address at once; others and later ones are served', async () => {
    // Both refusal series exist at 0 before any refusal (a rate() or an alert needs them). Read
    // from another address on a connection of its own: fetch's pool would hold one of 127.0.0.1's.
    const fresh = parseScrape(await getFrom(`${server.url}/metrics`, '127.0.0.4'));
    expect(fresh('kmoe_http_connections_refused_total{reason="max_connections"}')).toBe(0);
    expect(fresh('kmoe_http_connections_refused_total{reason="max_connections_per_client"}')).toBe(0);
    const held: net.Socket[] = [];
    for (let i = 0; i < PER_CLIENT; i++) {
      const s = await holdConnection(server.url);
      expect(s).not.toBeNull();
      held.push(s!);
    }
    // The next one from the same address is closed without an answer.
    expect(await holdConnection(server.url)).toBeNull();
    // Another address (Linux routes all of 127/8 to loopback) has slots of its own.
    const other = await holdConnection(server.url, '127.0.0.2');
    expect(other).not.toBeNull();
    other!.destroy();
    // Once one of the address's connections closes, it is served again.
    held.pop()!.destroy();
    let again: net.Socket | null = null;
    for (let i = 0; i < 100 && again === null; i++) {
      again = await holdConnection(server.url);
      if (again === null) await new Promise((r) => setTimeout(r, 20));
    }
    expect(again).not.toBeNull();
    for (const s of [...held, again!]) s.destroy();
    // Counted, and logged at warn (at most once per 10 s, with how many were refused).
    let refused = 0;
    for (let i = 0; i < 100; i++) {
      try {
        const m = await scrape(`${server.url}/metrics`);
        refused = m('kmoe_http_connections_refused_total{reason="max_connections_per_client"}');
        break;
      } catch {
        // Still at the cap while the destroyed sockets close on the server's side.
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    expect(refused).toBeGreaterThanOrEqual(1);
    expect(server.stderr()).toMatch(
      /"level":40,[^\n]*"remote":"127\.0\.0\.1","refused":\d+,"max":3,"msg":"closed connections over --max-connections-per-client/,
    );
  });

  it('closes an idle keep-alive connection after 5 s, freeing its slot (it held one for 72 s)', async () => {
    const socket = await holdConnection(server.url, '127.0.0.3');
    expect(socket).not.toBeNull();
    const opened = performance.now();
    await new Promise((resolve) => socket!.once('close', resolve));
    const idleMs = performance.now() - opened;
    expect(idleMs).toBeGreaterThan(4_000);
    expect(idleMs).toBeLessThan(30_000);
  }, 60_000);
});

/** An in-process ApiServer with one route, POST /echo, and the given time limits. */
function echoServer(limits: { headersTimeoutMs: number; requestTimeoutMs?: number }) {
  return inProcessApiServer(
    {
      '/echo': {
        name: 'echo',
        methods: { POST: async ({ req, res }) => sendJson(res, 200, req.body) },
      },
    },
    limits,
  );
}

describe('the time limit for request headers', () => {
  const HEADERS_MS = 500;
  let api: ApiServer;
  let url: string;
  let logText: () => string;
  beforeAll(async () => {
    ({ api, url, logText } = await echoServer({ headersTimeoutMs: HEADERS_MS }));
  });
  afterAll(async () => {
    await api?.close();
  });

  it('answers 408 and closes a connection whose headers do not arrive in time', async () => {
    // Never finishes its headers: the answer comes once the limit (checked every second) is past.
    const res = await rawRequest(url, ['POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-'], {
      timeoutMs: 20_000,
    });
    expect(res.status).toBe(408);
    expect(res.headers.connection).toBe('close');
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.json).toMatchObject({
      error: { code: 'request_timeout', message: 'the request headers did not arrive within 0.5 s' },
    });
    // Its headers never arrived, so no client id: a fresh one, under which it is logged.
    const id = res.headers['x-request-id'];
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(await accessLine(logText, id!)).toMatchObject({
      status: 408,
      errorCode: 'request_timeout',
      parserCode: 'ERR_HTTP_REQUEST_TIMEOUT',
    });
  });

  it('gives a body more time than the headers limit (the request limit, 60 s)', async () => {
    const body = '{"a":1}';
    const { hostname, port } = new URL(url);
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    await new Promise((r) => socket.once('connect', r));
    socket.write(
      `POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`,
    );
    // Past the headers limit and a check of it.
    await new Promise((r) => setTimeout(r, HEADERS_MS + 1500));
    socket.write(body);
    await new Promise((r) => socket.once('close', r));
    const res = parseResponse(Buffer.concat(chunks));
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ a: 1 });
  });
});

describe('the time limit for a whole request', () => {
  const REQUEST_MS = 1000;
  let api: ApiServer;
  let url: string;
  let logText: () => string;
  beforeAll(async () => {
    ({ api, url, logText } = await echoServer({ headersTimeoutMs: 500, requestTimeoutMs: REQUEST_MS }));
  });
  afterAll(async () => {
    await api?.close();
  });

  it('answers 408 to a stalled body and logs the 408, not the close that follows it', async () => {
    const { hostname, port } = new URL(url);
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      // The client reads the answer, then closes its side mid-body, as clients do: Node's parser
      // then reports the body cut short (HPE_INVALID_EOF_STATE), which must not replace the reason.
      socket.end();
    });
    const closed = new Promise((r) => socket.once('close', r));
    await new Promise((r) => socket.once('connect', r));
    socket.write(
      'POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: stalled-1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a"',
    );
    await closed;
    const res = parseResponse(Buffer.concat(chunks));
    expect(res.status).toBe(408);
    expect(res.headers['x-request-id']).toBe('stalled-1');
    expect(res.json).toMatchObject({
      error: { code: 'request_timeout', message: 'the request did not arrive within 1 s' },
    });
    const line = await accessLine(logText, 'stalled-1');
    expect(line).toMatchObject({
      method: 'POST',
      path: '/echo',
      status: 408,
      error: 'the request did not arrive within 1 s',
      errorCode: 'request_timeout',
      parserCode: 'ERR_HTTP_REQUEST_TIMEOUT',
    });
  });
});

describe('clientOf', () => {
  it('counts an IPv4-mapped address as its IPv4 address and an IPv6 address as its /64', () => {
    expect(clientOf('127.0.0.1')).toBe('127.0.0.1');
    expect(clientOf('::ffff:127.0.0.2')).toBe('127.0.0.2');
    expect(clientOf('::FFFF:10.0.0.1')).toBe('10.0.0.1');
    expect(clientOf('::1')).toBe('0:0:0:0::/64');
    expect(clientOf('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(clientOf('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
    expect(clientOf('2001:0db8:0001:0002::')).toBe('2001:db8:1:2::/64');
    expect(clientOf('2001:db8::5')).toBe('2001:db8:0:0::/64');
    expect(clientOf('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  });
});
