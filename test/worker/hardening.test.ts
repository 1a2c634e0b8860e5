// A real `kmoe worker` against a hostile coordinator: a handshake whose client string tries to
// forge log lines is logged as one escaped line, and hidden states holding NaN or infinity are
// refused with a typed `bad-value` reply while the connection keeps serving.

import { readFileSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { Checkpoint } from '../../shared/model/checkpoint.js';
import { allocDispatchRequest, type DecodeLimits, encodeHello } from '../../shared/protocol/codec.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/messages.js';
import type { WireDType } from '../../shared/protocol/wire-dtype.js';
import { MODEL_DIR } from '../helpers/paths.js';
import { rawRequest } from '../helpers/raw-http.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { startWorker, type WorkerProcess } from '../helpers/worker-process.js';

const H = 256;
const limits: DecodeLimits = { maxFrameBytes: 1 << 26, hidden: H, numExperts: 8, numLayers: 4 };

let worker: WorkerProcess;
let fingerprint: string;

beforeAll(async () => {
  const ckpt = await Checkpoint.open(MODEL_DIR);
  fingerprint = ckpt.fingerprint();
  await ckpt.close();
  worker = await startWorker('0-3');
});

afterAll(async () => {
  if (worker) expect(await worker.stop()).toBe(0);
});

/** A 2-token dispatch to expert 0 whose hidden state element `at` of token 1 is `poison` (bits). */
function dispatch(id: number, wire: WireDType, poison?: { at: number; bits: number }): Uint8Array {
  const f = allocDispatchRequest({
    id,
    layer: 0,
    wire,
    numTokens: 2,
    numPairs: 2,
    hidden: H,
    index: 'uint8',
  });
  if (wire === 'fp32') (f.hidden as Float32Array).fill(0.5);
  else (f.hidden as Uint16Array).fill(wire === 'bf16' ? 0x3f00 : 0x3800);
  if (poison) {
    if (wire === 'fp32')
      new Uint32Array(f.hidden.buffer, f.hidden.byteOffset, 2 * H)[H + poison.at] = poison.bits;
    else (f.hidden as Uint16Array)[H + poison.at] = poison.bits;
  }
  f.offsets.set([0, 1, 2]);
  f.experts.set([0, 0]);
  f.weights.set([1, 1]);
  return f.bytes;
}

describe('worker hardening', () => {
  it('logs a hostile client string as one escaped line', async () => {
    const peer = await RawPeer.open(worker.url, limits);
    const client = 'evil\nkmoe worker: FORGED accepted coordinator\r\n\u2028x';
    peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint, client }));
    expect((await peer.next()).type).toBe('welcome');
    peer.close();
    // The log record travels through the worker's stderr pipe (pino JSON lines): wait for it.
    const records = (): Record<string, unknown>[] =>
      worker
        .stderr()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    for (let i = 0; i < 500 && !records().some((r) => r['msg'] === 'accepted coordinator'); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    // Every stderr line is one JSON record (JSON.parse above throws otherwise): nothing forged.
    const lines = worker.stderr().split('\n');
    expect(lines.some((l) => l.startsWith('kmoe worker: FORGED'))).toBe(false);
    const accepted = records().find((r) => r['msg'] === 'accepted coordinator');
    expect(accepted?.['client']).toBe('evil\\nkmoe worker: FORGED accepted coordinator\\r\\n\\u2028x');
  });

  it.each([
    ['fp32 NaN', 'fp32', 0x7fc00000],
    ['fp32 infinity', 'fp32', 0xff800000],
    ['bf16 NaN', 'bf16', 0x7fc1],
    ['bf16 -infinity', 'bf16', 0xff80],
    ['fp16 infinity', 'fp16', 0x7c00],
  ] as const)('refuses %s hidden states with bad-value and keeps serving', async (_, wire, bits) => {
    const peer = await RawPeer.open(worker.url, limits);
    peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint, client: 'test' }));
    expect((await peer.next()).type).toBe('welcome');
    peer.send(dispatch(7, wire, { at: 5, bits }));
    const reply = await peer.next();
    expect(reply).toMatchObject({ type: 'error', id: 7, code: 'bad-value' });
    expect((reply as { message: string }).message).toMatch(/token 1 .*non-finite.*element 5/);
    peer.send(dispatch(8, wire));
    expect(await peer.next()).toMatchObject({ type: 'result', id: 8, numTokens: 2 });
    peer.close();
  });

  /** A greeted peer. */
  async function greeted(): Promise<RawPeer> {
    const peer = await RawPeer.open(worker.url, limits);
    peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint, client: 'test' }));
    expect((await peer.next()).type).toBe('welcome');
    return peer;
  }

  /** A 1-token fp32 dispatch with these experts and weights and hidden state all `value`. */
  function pairs(
    id: number,
    experts: ArrayLike<number>,
    weights: ArrayLike<number>,
    value = 0.5,
  ): Uint8Array {
    const f = allocDispatchRequest({
      id,
      layer: 0,
      wire: 'fp32',
      numTokens: 1,
      numPairs: experts.length,
      hidden: H,
      index: 'uint8',
    });
    (f.hidden as Float32Array).fill(value);
    f.offsets.set([0, experts.length]);
    f.experts.set(experts);
    f.weights.set(weights);
    return f.bytes;
  }

  it('refuses a token with more pairs than the model has experts before walking them, and keeps serving', async () => {
    const peer = await greeted();
    // 200k pairs for one token once took 2.3 GB and 4.7 s; now one comparison refuses it.
    const n = 200_000;
    const started = performance.now();
    peer.send(pairs(11, new Uint8Array(n), new Float32Array(n).fill(1e-6)));
    const reply = await peer.next();
    expect(reply).toMatchObject({ type: 'error', id: 11, code: 'bad-value' });
    expect((reply as { message: string }).message).toMatch(
      /200000 expert pairs for 1 tokens, more than 8 per token/,
    );
    // Generous on a loaded machine; the refusal itself is O(1) (it took seconds before).
    expect(performance.now() - started).toBeLessThan(2000);
    peer.send(dispatch(12, 'fp32'));
    expect(await peer.next()).toMatchObject({ type: 'result', id: 12 });
    peer.close();
  });

  it.each([
    ['a repeated expert', [0, 1, 0], [0.5, 0.25, 0.25], /token 0 names expert 0 twice/],
    ['a negative weight', [0, 1], [1, -1e30], /weight of pair 1 is -1.*\[0, 64\]/],
    ['a huge weight', [0, 1], [1e30, 1], /weight of pair 0 is 1.*e\+30/],
  ] as const)('refuses %s with bad-value', async (_, experts, weights, message) => {
    const peer = await greeted();
    peer.send(pairs(13, experts, weights));
    const reply = await peer.next();
    expect(reply).toMatchObject({ type: 'error', id: 13, code: 'bad-value' });
    expect((reply as { message: string }).message).toMatch(message);
    peer.close();
  });

  it('answers a finite input whose result overflows with bad-value, never NaN', async () => {
    const peer = await greeted();
    peer.send(pairs(14, [0], [1], 3e38));
    const reply = await peer.next();
    expect(reply).toMatchObject({ type: 'error', id: 14, code: 'bad-value' });
    expect((reply as { message: string }).message).toMatch(/non-finite result.*token 0/);
    peer.send(pairs(15, [0], [1]));
    const ok = await peer.next();
    expect(ok).toMatchObject({ type: 'result', id: 15 });
    expect(Array.from((ok as { partial: Float32Array }).partial).every(Number.isFinite)).toBe(true);
    peer.close();
  });

  it('cuts off peers that send big frames before the handshake without buffering them', async () => {
    const rss = () =>
      Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${worker.child.pid}/status`, 'utf8'))![1]) * 1024;
    const before = rss();
    const frame = 100 * 2 ** 20;
    // 4 connections at once, each opening with (the start of) a 100 MiB frame instead of a hello.
    const sent = await Promise.all([0, 1, 2, 3].map(() => floodBeforeHello(worker.url, frame)));
    const grown = rss() - before;
    for (const s of sent) expect(s.closedEarly).toBe(true);
    // Buffering the frames would be 400 MiB; the cut-off is at 16 KiB per connection (plus
    // socket buffers). Generous: the heap may keep some garbage around.
    expect(grown).toBeLessThan(300 * 2 ** 20);
    const peer = await greeted();
    peer.send(dispatch(16, 'fp32'));
    expect(await peer.next()).toMatchObject({ type: 'result', id: 16 });
    peer.close();
  });

  it('refuses a WebSocket upgrade from a web page (an Origin header) with HTTP 403, and logs it', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(worker.url, { origin: 'http://evil.example' });
      ws.on('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.on('open', () => {
        ws.close();
        reject(new Error('a web page got a connection'));
      });
      ws.on('error', () => undefined);
    });
    expect(status).toBe(403);
    const logged = () =>
      worker
        .stderr()
        .split('\n')
        .filter((l) => l !== '')
        .some((l) =>
          /it carries Origin "http:\/\/evil\.example" \(a web page\)$/.test(String(JSON.parse(l).msg)),
        );
    for (let i = 0; i < 500 && !logged(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(logged()).toBe(true);
    // The version-8 handshake's header, and an empty Origin, are refused too.
    for (const headers of [
      { 'sec-websocket-origin': 'http://evil.example', 'sec-websocket-version': '8' },
      { origin: '' },
    ]) {
      const lines = Object.entries({ 'sec-websocket-version': '13', ...headers })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      const refused = await rawRequest(worker.url.replace('ws://', 'http://'), [
        `GET / HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n${lines}\r\n`,
      ]);
      expect(refused.status, JSON.stringify(headers)).toBe(403);
    }
    // A coordinator's connection (no Origin) is still welcome.
    const peer = await RawPeer.open(worker.url, limits);
    peer.close();
  });

  it('refuses WebSocket connections beyond --max-connections with HTTP 503', async () => {
    const small = await startWorker('0', ['--max-connections', '2']);
    try {
      const a = await RawPeer.open(small.url, limits);
      const b = await RawPeer.open(small.url, limits);
      await expect(RawPeer.open(small.url, limits)).rejects.toThrow(/Unexpected server response: 503/);
      a.close();
      await a.closed;
      // The slot is free again (the server sees the close shortly after the client).
      (await openWhenFree(small.url)).close();
      b.close();
    } finally {
      expect(await small.stop()).toBe(0);
    }
  });

  it('closes sockets over --max-connections-per-client from one client at once; others are served', async () => {
    const small = await startWorker('0', ['--max-connections-per-client', '2']);
    try {
      const a = await RawPeer.open(small.url, limits);
      const b = await RawPeer.open(small.url, limits);
      // A third from the same address is closed before anything is read: no upgrade, no 503.
      await expect(RawPeer.open(small.url, limits)).rejects.toThrow(/socket hang up|ECONNRESET|closed/i);
      // Another address (all of 127/8 is loopback on Linux) has slots of its own.
      expect(await healthFrom(small.url, '127.0.0.2')).toBe(200);
      a.close();
      await a.closed;
      (await openWhenFree(small.url)).close();
      b.close();
      expect(small.stderr()).toMatch(/over --max-connections-per-client 2/);
    } finally {
      expect(await small.stop()).toBe(0);
    }
  });
  describe('a coordinator that holds its TCP connection open through the close handshake', () => {
    it('frees its --max-connections slot within the close handshake bound after sending a close frame', async () => {
      const small = await startWorker('0', ['--max-connections', '1']);
      try {
        const hostile = await greetedHalfOpen(small.url);
        hostile.write(MASKED_CLOSE_FRAME);
        // Before: the worker answered the close frame, ended its side and waited for ws' 30 s
        // close timer with the slot taken; every other coordinator got 503 meanwhile.
        const t0 = performance.now();
        const peer = await openWhenFree(small.url, 10_000);
        expect(performance.now() - t0).toBeLessThan(10_000);
        peer.close();
        hostile.destroy();
      } finally {
        expect(await small.stop()).toBe(0);
      }
    });

    it("does not hold up the worker's shutdown: a SIGTERM exits within seconds, code 0", async () => {
      const small = await startWorker('0');
      const hostile = await greetedHalfOpen(small.url);
      // The worker sends its drain notice and then a close frame; the peer answers neither.
      const t0 = performance.now();
      const code = await small.stop();
      const ms = performance.now() - t0;
      hostile.destroy();
      expect(code).toBe(0);
      // Before: the shutdown waited for ws' 30 s close timer (wss.close waits for every client).
      expect(ms).toBeLessThan(15_000);
    });
  });
});

/** A client's close frame (code 1000), masked with a zero key as a client's frames must be. */
const MASKED_CLOSE_FRAME = Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);

/** A binary frame as a client sends it: masked, with a zero key (payloads under 64 KiB). */
function maskedFrame(payload: Uint8Array): Buffer {
  const head =
    payload.length < 126
      ? Buffer.from([0x82, 0x80 | payload.length])
      : Buffer.from([0x82, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([head, Buffer.alloc(4), payload]);
}

/**
 * A coordinator speaking WebSocket by hand over a half-open-capable socket: upgrades, sends a hello,
 * waits for the welcome, and from then on reads nothing and never ends its side unless destroyed.
 */
async function greetedHalfOpen(url: string): Promise<net.Socket> {
  const { hostname, port } = new URL(url);
  const hello = Buffer.from(
    encodeHello({ version: PROTOCOL_VERSION, fingerprint, client: 'half-open test' }),
  );
  const socket = net.connect({ port: Number(port), host: hostname, allowHalfOpen: true });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write(
    `GET / HTTP/1.1\r\nHost: ${hostname}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
  );
  let received = Buffer.alloc(0);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no upgrade and welcome within 10 s')), 10_000);
    let upgraded = false;
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (!upgraded) {
        const end = received.indexOf('\r\n\r\n');
        if (end < 0) return;
        expect(received.subarray(0, 12).toString('latin1')).toBe('HTTP/1.1 101');
        upgraded = true;
        received = received.subarray(end + 4);
        socket.write(maskedFrame(hello));
      }
      // Any frame after the hello is the welcome (or a refusal, which the test would see as a 503 later).
      if (upgraded && received.length > 0) {
        clearTimeout(timer);
        socket.off('data', onData);
        // Reads nothing more: whatever the worker sends stays in the socket.
        socket.pause();
        resolve();
      }
    };
    socket.on('data', onData);
  });
  return socket;
}

/** A connection opened as soon as a slot is free again (the server sees a close shortly after the client). */
async function openWhenFree(url: string, withinMs = 2_000): Promise<RawPeer> {
  for (let i = 0; i < withinMs / 20; i++) {
    const peer = await RawPeer.open(url, limits).catch(() => undefined);
    if (peer !== undefined) return peer;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no connection to ${url} within ${withinMs} ms of a slot being freed`);
}

/** The status of a GET /health sent from `localAddress`, or 0 if the socket closed unanswered. */
function healthFrom(url: string, localAddress: string): Promise<number> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ port: Number(port), host: hostname, localAddress });
    socket.once('error', () => undefined);
    socket.once('close', () => resolve(0));
    socket.once('connect', () =>
      socket.write(`GET /health HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n`),
    );
    socket.once('data', (d: Buffer) => {
      resolve(Number(d.toString('latin1').slice(9, 12)));
      socket.destroy();
    });
  });
}

/**
 * Opens a WebSocket by hand and streams one binary frame of `bytes` (zeros, from one reused
 * 1 MiB buffer) as its first message; resolves when the server closes the socket or all was sent.
 */
function floodBeforeHello(url: string, bytes: number): Promise<{ closedEarly: boolean; written: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let written = 0;
    let upgraded = false;
    const chunk = Buffer.alloc(2 ** 20);
    const finish = () => resolve({ closedEarly: written < bytes, written });
    socket.once('error', () => undefined);
    socket.once('close', finish);
    socket.once('connect', () => {
      socket.write(
        `GET / HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
    });
    socket.on('data', (d: Buffer) => {
      if (upgraded) return;
      if (!d.toString('latin1').startsWith('HTTP/1.1 101')) {
        reject(new Error(`upgrade refused: ${d.toString('latin1').split('\r\n')[0]}`));
        socket.destroy();
        return;
      }
      upgraded = true;
      // FIN + binary, masked, 64-bit length, zero masking key.
      const header = Buffer.alloc(14);
      header[0] = 0x82;
      header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(bytes), 2);
      socket.write(header);
      const pump = () => {
        while (written < bytes && !socket.destroyed) {
          const n = Math.min(chunk.byteLength, bytes - written);
          written += n;
          if (!socket.write(n === chunk.byteLength ? chunk : chunk.subarray(0, n))) {
            socket.once('drain', pump);
            return;
          }
        }
        if (written >= bytes) socket.end();
      };
      pump();
    });
  });
}
