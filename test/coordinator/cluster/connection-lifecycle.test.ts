// A connection's life as hostile workers can shape it: raw TCP servers that speak WebSocket by hand
// (test/helpers/tampering-relay.ts relays a real worker; these decide exactly what lands in which
// socket read, and when the TCP connection really closes). From a hostile review of the handover
// of connections (a notice, drain or drop in the welcome's read); each test failed on the code
// before it, as its comment says.

import { createHash } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ClusterHealth } from '../../../coordinator/cluster/cluster-health.js';
import { StaticMembership } from '../../../coordinator/cluster/membership.js';
import { PlacementTable } from '../../../coordinator/cluster/placement.js';
import {
  type ClusterEvents,
  MAX_FAILURES_REPORTED,
  RemoteExpertBackend,
  type WorkerDown,
  type WorkerUnreachable,
  type WorkerUp,
} from '../../../coordinator/cluster/remote-expert-backend.js';
import { WorkerConnection } from '../../../coordinator/cluster/worker-connection.js';
import { encodeDrain, encodeHoldings, encodeRefuse, encodeWelcome } from '../../../shared/protocol/codec.js';
import { PROTOCOL_VERSION } from '../../../shared/protocol/messages.js';
import { wsFrameHeader } from '../../helpers/tampering-relay.js';

const H = 8;
const MODEL = { numLayers: 4, numExperts: 8, hidden: H, nativeK: 2 };
const FINGERPRINT = 'f'.repeat(64);

function frame(bytes: Uint8Array): Buffer {
  return Buffer.concat([wsFrameHeader(bytes.byteLength), bytes]);
}
function welcome(experts: number[], fingerprint = FINGERPRINT, maxFrameBytes = 1 << 20): Buffer {
  return frame(
    encodeWelcome({
      version: PROTOCOL_VERSION,
      fingerprint,
      worker: 'fake',
      experts,
      numLayers: MODEL.numLayers,
      numExperts: MODEL.numExperts,
      hidden: H,
      wire: ['fp32'],
      maxFrameBytes,
    }),
  );
}
/** A close frame (code 1000) from the server side: unmasked. */
const CLOSE_FRAME = Buffer.from([0x88, 0x02, 0x03, 0xe8]);

interface FakeWorker {
  readonly url: string;
  /** Server-side sockets, per connection in order. */
  readonly sockets: Socket[];
  close(): Promise<void>;
}

/**
 * A raw TCP "worker": completes the HTTP upgrade, waits for the hello (any bytes), then calls
 * `script(socket, n)` for connection n (0-based). Whatever the coordinator sends afterwards is
 * read and ignored (so the socket stays open until the script or the test closes it).
 */
async function fakeWorker(script: (s: Socket, n: number) => void): Promise<FakeWorker> {
  const sockets: Socket[] = [];
  const server: Server = createServer({ allowHalfOpen: true }, (s) => {
    const n = sockets.length;
    sockets.push(s);
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    let stage: 'http' | 'hello' | 'open' = 'http';
    s.on('data', (chunk) => {
      if (stage === 'open') return;
      buf = Buffer.concat([buf, chunk]);
      if (stage === 'http') {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        const key = /sec-websocket-key:\s*(\S+)/i.exec(head)![1]!;
        const accept = createHash('sha1')
          .update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
          .digest('base64');
        s.write(
          `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
        );
        buf = buf.subarray(end + 4);
        stage = 'hello';
      }
      if (stage === 'hello' && buf.length > 0) {
        stage = 'open';
        script(s, n);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as { port: number };
  return {
    url: `ws://127.0.0.1:${port}`,
    sockets,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const fakes: FakeWorker[] = [];
const backends: RemoteExpertBackend[] = [];
afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.close()));
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

async function fake(script: (s: Socket, n: number) => void): Promise<FakeWorker> {
  const f = await fakeWorker(script);
  fakes.push(f);
  return f;
}

async function backend(
  workers: string[],
  events: ClusterEvents = {},
  extra: { skipFailed?: boolean } = {},
): Promise<RemoteExpertBackend> {
  const be = await RemoteExpertBackend.connect(
    { workers, wire: 'fp32', timeoutMs: 5_000, handshakeTimeoutMs: 2_000, balance: 'baseline', ...extra },
    { fingerprint: FINGERPRINT, ...MODEL },
    events,
  );
  backends.push(be);
  return be;
}

function recorder() {
  const log: string[] = [];
  const events: ClusterEvents = {
    down: (e: WorkerDown) => log.push(`down ${e.url}`),
    up: (e: WorkerUp) => log.push(`up ${e.url} ${e.why}`),
  };
  return { log, events };
}

/** The second worker: welcomes 4-7 after `delayMs` (the start-up waits for it). */
const slowB = (delayMs: number) => (s: Socket) => setTimeout(() => s.write(welcome([4, 5, 6, 7])), delayMs);

describe('a connection that is closing (close frame read, TCP still open) when it is taken in', () => {
  it('at start-up: one down, one up, and no second "down" once the old socket finally closes', async () => {
    // Connection 0: welcome, then (after the handover, before the backend exists) a close frame;
    // the TCP connection stays open until the test ends it. Later connections: plain welcome.
    const a = await fake((s, n) => {
      s.write(welcome([0, 1, 2, 3]));
      if (n === 0) setTimeout(() => s.write(CLOSE_FRAME), 50);
    });
    const b = await fake(slowB(300));
    const { log, events } = recorder();
    const be = await backend([a.url, b.url], events);
    // The start-up saw connection 0 not alive and called it lost; the reconnect comes back.
    await vi.waitFor(() => expect(be.view.connections[0]?.usable).toBe(true), { timeout: 5_000 });
    expect(log).toEqual([`down ${a.url}`, `up ${a.url} connected`]);
    // The first TCP connection ends now, if the close handshake bound (1 s) has not ended it yet: a
    // stale drop must not mark the new connection down either way.
    a.sockets[0]!.destroy();
    await new Promise((r) => setTimeout(r, 300));
    expect(be.view.connections[0]?.usable).toBe(true);
    // Before: [down, up, down] — a stale second "down" for a worker that is connected.
    expect(log).toEqual([`down ${a.url}`, `up ${a.url} connected`]);
  });

  it('/ready (ClusterHealth) keeps experts 0-3 covered while the backend routes to the worker', async () => {
    const a = await fake((s, n) => {
      s.write(welcome([0, 1, 2, 3]));
      if (n === 0) setTimeout(() => s.write(CLOSE_FRAME), 50);
    });
    const b = await fake(slowB(300));
    const downs: ((e: WorkerDown) => void)[] = [];
    const ups: ((e: WorkerUp) => void)[] = [];
    const pendingDown: WorkerDown[] = [];
    const pendingUp: WorkerUp[] = [];
    // The engine thread's events reach the main thread's health after start-up, as in serve.ts.
    const be = await backend([a.url, b.url], {
      down: (e) => {
        if (downs.length === 0) pendingDown.push(e);
        for (const l of downs) l(e);
      },
      up: (e) => {
        if (ups.length === 0) pendingUp.push(e);
        for (const l of ups) l(e);
      },
    });
    const health = ClusterHealth.watch({
      description: be.description,
      numExperts: 8,
      placement: be.placement.workers,
      membership: new StaticMembership([a.url, b.url]),
      connections: (l) => downs.push(l),
      connectionsUp: (l) => ups.push(l),
      reportsExits: false,
    });
    for (const e of pendingDown) for (const l of downs) l(e);
    for (const e of pendingUp) for (const l of ups) l(e);
    await vi.waitFor(() => expect(be.view.connections[0]?.usable).toBe(true), { timeout: 5_000 });
    expect(health.coverage().covered).toBe(true);
    a.sockets[0]!.destroy();
    await new Promise((r) => setTimeout(r, 300));
    expect(be.view.connections[0]?.usable).toBe(true);
    // Before: covered false, "experts 0-3 have no live worker: worker ws://... closed the connection".
    expect(health.coverage()).toMatchObject({ covered: true });
  });

  it('at a join: a join while the old connection is closing, then the old socket closes: no stale "down"', async () => {
    let closeNow: (() => void) | undefined;
    const a = await fake((s, n) => {
      s.write(welcome([0, 1, 2, 3]));
      if (n === 0) closeNow = () => s.write(CLOSE_FRAME);
    });
    const b = await fake((s) => s.write(welcome([4, 5, 6, 7])));
    const { log, events } = recorder();
    const be = await backend([a.url, b.url], events);
    closeNow!();
    await vi.waitFor(() => expect(be.view.connections[0]?.alive).toBe(false));
    // The registry announces the worker again (a hostile record writer can make it do so).
    await expect(be.join(a.url)).resolves.toEqual({ url: a.url, experts: [0, 1, 2, 3] });
    expect(log).toEqual([`up ${a.url} connected`]);
    a.sockets[0]!.destroy();
    await new Promise((r) => setTimeout(r, 300));
    expect(be.view.connections[0]?.usable).toBe(true);
    // Before: [up, down] — the old connection's drop is reported against the new one.
    expect(log).toEqual([`up ${a.url} connected`]);
  });
});

describe('a WebSocket protocol error (not a kmoe frame) from the worker', () => {
  /** A binary frame with RSV1 set, which ws refuses with an error (no permessage-deflate). */
  const BAD_WS_FRAME = Buffer.from([0xc2, 0x01, 0x00]);

  it("in the welcome's read: the connect fails and the socket is torn down at once", async () => {
    const a = await fake((s) => s.write(Buffer.concat([welcome([0, 1, 2, 3]), BAD_WS_FRAME])));
    const connecting = WorkerConnection.connect(a.url, {
      fingerprint: FINGERPRINT,
      wire: 'fp32',
      model: { numLayers: 4, numExperts: 8, hidden: H },
      handshakeTimeoutMs: 2_000,
      client: 'connection-lifecycle test',
    });
    await expect(connecting).rejects.toThrow(/dropped as the handshake ended: .*Invalid WebSocket frame/);
    // A torn-down socket answers the peer's next bytes with a reset; a half-closed one that ws
    // still waits on (its 30 s close timer) takes them silently.
    const s = a.sockets[0]!;
    const closed = new Promise<boolean>((resolve) => {
      s.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 1_500);
    });
    await new Promise((r) => setTimeout(r, 200));
    s.write('x');
    setTimeout(() => s.writable && s.write('y'), 300);
    // Before: drop() returns at once (the 'error' listener set `down`), so nothing
    // terminates the socket or stops the inbound counter; it lingers until ws' 30 s close timer.
    expect(await closed).toBe(true);
  });

  it('after the handover: a pending request fails over at once, not at the dispatch timeout; the drop is reported', async () => {
    const { a, log, outcome, ms } = await requestThenSend(BAD_WS_FRAME, 5_000);
    // Before: the request waits out its 5 s timeout ('sent no result within 5000 ms'),
    // and no "down" is reported until ws' 30 s close timer: the slot is neither used nor reconnected.
    expect(ms).toBeLessThan(1_000);
    expect(outcome).toMatch(/Invalid WebSocket frame|RSV1/);
    await vi.waitFor(() => expect(log).toContain(`down ${a.url}`), { timeout: 1_000 });
  });
});

describe('a close frame after the handover, with the TCP connection held open', () => {
  it('is a drop within the close handshake bound: pending requests fail over, the worker is reported down and redialled', async () => {
    // The fake worker sends a close frame and then neither answers nor ends its TCP connection.
    const { a, be, log, outcome, ms } = await requestThenSend(CLOSE_FRAME, 20_000);
    // Before: the request and the "down" waited for ws' 30 s close timer (the request's own 20 s
    // timeout came first), and the slot was neither usable nor redialled meanwhile.
    expect(outcome).toMatch(/closed the connection \(code 1000\)/);
    expect(ms).toBeLessThan(10_000);
    await vi.waitFor(() => expect(log).toContain(`down ${a.url}`), { timeout: 1_000 });
    await vi.waitFor(() => expect(be.view.connections[0]?.usable).toBe(true), { timeout: 10_000 });
    expect(a.sockets.length).toBe(2);
  });
});

/**
 * Workers A (experts 0-3) and B (4-7) up; a request pending on A's first connection when A writes
 * `bytes` into it. Resolves with how the request ended and how long that took.
 */
async function requestThenSend(bytes: Buffer, requestTimeoutMs: number) {
  let send: (() => void) | undefined;
  const a = await fake((s, n) => {
    s.write(welcome([0, 1, 2, 3]));
    if (n === 0) send = () => s.write(bytes);
  });
  const b = await fake((s) => s.write(welcome([4, 5, 6, 7])));
  const { log, events } = recorder();
  const be = await backend([a.url, b.url], events);
  const t0 = performance.now();
  const req = be.view.connections[0]!.request(1, 1, new Uint8Array(64), requestTimeoutMs).then(
    () => 'answered',
    (e: Error) => e.message,
  );
  send!();
  const outcome = await req;
  return { a, be, log, outcome, ms: performance.now() - t0 };
}

describe("drain and holdings in the welcome's read", () => {
  it('a drain notice in the welcome read at a join: taken in draining, given no work, reconnected when it closes', async () => {
    const a = await fake((s, n) => {
      if (n === 0) s.write(welcome([0, 1, 2, 3]));
      else if (n === 1)
        s.write(Buffer.concat([welcome([0, 1, 2, 3]), frame(encodeDrain({ reason: 'bye' }))]));
      else s.write(welcome([0, 1, 2, 3]));
    });
    const b = await fake((s) => s.write(welcome([4, 5, 6, 7])));
    const { log, events } = recorder();
    const be = await backend([a.url, b.url], events);
    a.sockets[0]!.destroy();
    await vi.waitFor(() => expect(a.sockets.length).toBeGreaterThanOrEqual(2), { timeout: 3_000 });
    await vi.waitFor(() => expect(be.view.connections[0]?.draining).toBe(true), { timeout: 3_000 });
    expect(be.view.connections[0]?.usable).toBe(false);
    a.sockets[1]!.destroy();
    await vi.waitFor(() => expect(be.view.connections[0]?.usable).toBe(true), { timeout: 5_000 });
    expect(log).toEqual([`down ${a.url}`, `up ${a.url} connected`, `down ${a.url}`, `up ${a.url} connected`]);
  });

  it('start-up with skipFailed: a bad notice in the welcome read leaves the worker out; others start', async () => {
    const a = await fake((s) =>
      s.write(Buffer.concat([welcome([0, 1, 2, 3]), frame(encodeHoldings({ experts: [9] }))])),
    );
    const c = await fake((s) => s.write(welcome([0, 1, 2, 3, 4, 5, 6, 7])));
    const be = await backend([a.url, c.url], {}, { skipFailed: true });
    expect(be.placement.workers.map((w) => w.url)).toEqual([c.url]);
  });
});

describe('workers left out at start-up, and background attempts that fail', () => {
  const OTHER_MODEL = 'e'.repeat(64);

  it('start-up with skipFailed: experts only a left-out worker held name its handshake error', async () => {
    const a = await fake((s) => s.write(welcome([0, 1, 2, 3])));
    const b = await fake((s) => s.write(welcome([4, 5, 6, 7], OTHER_MODEL)));
    // Before: "experts 4-7 of 8 are held by no worker (ws://…: 0-3)", and not why b was left out.
    const err = await backend([a.url, b.url], {}, { skipFailed: true }).catch((e: unknown) => e);
    expect((err as Error).name).toBe('PlacementError');
    expect((err as Error).message).toBe(
      `experts 4-7 of 8 are held by no worker (${a.url} holds 0-3); the handshake of a worker failed: worker ${b.url}: serves model eeeeeeeeeeeeeeee…, this coordinator runs ffffffffffffffff…`,
    );
    expect((err as { details: { missing: number[] } }).details.missing).toEqual([4, 5, 6, 7]);
  });

  it('start-up with skipFailed and no worker completing its handshake: a placement error naming each', async () => {
    const a = await fake((s) => s.write(welcome([0, 1, 2, 3, 4, 5, 6, 7], OTHER_MODEL)));
    const b = await fake((s) => s.destroy());
    // Before: the first worker's handshake error alone (so `kmoe serve --redis` could not tell it
    // from any other failure, and exited).
    const err = await backend([a.url, b.url], {}, { skipFailed: true }).catch((e: unknown) => e);
    expect((err as Error).name).toBe('PlacementError');
    expect((err as Error).message).toMatch(
      new RegExp(
        `^experts 0-7 of 8 are held by no worker \\(none connected\\); the handshakes of 2 workers failed: worker ${a.url}: serves model e+…, .*; worker ${b.url}: `,
      ),
    );
  });

  it('start-up with skipFailed: a worker claiming an expert the model lacks is left out, not fatal', async () => {
    const a = await fake((s) => s.write(welcome([0, 1, 2, 3, 4, 5, 6, 7])));
    const b = await fake((s) => s.write(welcome([0, 1, 2, 3, 4, 5, 6, 7, 99])));
    // Before: PlacementTable.create threw "claims expert 99" (missing: []) for the whole start, so
    // `kmoe serve --redis` exited although a covered every expert.
    const be = await backend([a.url, b.url], {}, { skipFailed: true });
    expect(be.view.connections.map((c) => c?.url)).toEqual([a.url]);
    // Without skipFailed it is still the start's error.
    const err = await backend([a.url, b.url]).catch((e: unknown) => e);
    expect((err as Error).message).toBe(`worker ${b.url} claims expert 99, but the model has 8`);
  });

  it('start-up with skipFailed: experts only an out-of-range claimer held name it', async () => {
    const a = await fake((s) => s.write(welcome([0, 1, 2, 3])));
    const b = await fake((s) => s.write(welcome([4, 5, 6, 7, 99])));
    const err = await backend([a.url, b.url], {}, { skipFailed: true }).catch((e: unknown) => e);
    expect((err as { details: { missing: number[] } }).details.missing).toEqual([4, 5, 6, 7]);
    expect((err as Error).message).toContain(
      `the handshake of a worker failed: worker ${b.url} claims expert 99`,
    );
  });

  it('a worker flipping its holdings between two sizes is told of small frames once per figure, not per notice', async () => {
    // 800 bytes: 9 fp32 tokens with 4 experts each, 7 with 8 (hidden 8).
    const FLIPS = 2000;
    const a = await fake((s) => {
      const notices = Array.from({ length: FLIPS }, (_, i) =>
        frame(encodeHoldings({ experts: i % 2 === 0 ? [0, 1, 2, 3, 4, 5, 6, 7] : [0, 1, 2, 3] })),
      );
      s.write(Buffer.concat([welcome([0, 1, 2, 3], FINGERPRINT, 800), ...notices]));
    });
    const told: number[] = [];
    let ups = 0;
    await backend([a.url], { smallFrames: (e) => told.push(e.tokens), up: () => ups++ });
    // The notices read with the welcome count as its set; the rest come as holdings changes.
    await vi.waitFor(() => expect(ups).toBeGreaterThan(100), { timeout: 20_000 });
    await new Promise((r) => setTimeout(r, 500));
    // Before: one per notice whose figure differed from the last (one per flip).
    expect([...told].sort((x, y) => x - y)).toEqual([7, 9]);
  });

  it('a background reconnect whose every failure has a new text reports a bounded number of them', async () => {
    // A hostile endpoint behind a record: up once, then each hello answered by a refuse of its own
    // text. Before: one event (a serve log line) per attempt, for as long as it kept failing.
    const a = await fake((s, n) => {
      if (n === 0) {
        s.write(welcome([0, 1, 2, 3, 4, 5, 6, 7]));
        setTimeout(() => s.destroy(), 50);
      } else
        s.end(frame(encodeRefuse({ version: PROTOCOL_VERSION, reason: 'url', message: `not today (${n})` })));
    });
    const seen: string[] = [];
    await backend([a.url], { unreachable: (e: WorkerUnreachable) => seen.push(e.reason) });
    await vi.waitFor(() => expect(a.sockets.length).toBeGreaterThanOrEqual(7), { timeout: 20_000 });
    expect(seen.length).toBe(MAX_FAILURES_REPORTED);
    expect(seen[0]).toContain('not today (1)');
  });

  it('a background reconnect alternating between two failures reports each once', async () => {
    const a = await fake((s, n) => {
      if (n === 0) {
        s.write(welcome([0, 1, 2, 3, 4, 5, 6, 7]));
        setTimeout(() => s.destroy(), 50);
      } else if (n % 2 === 1) s.write(welcome([0, 1, 2, 3, 4, 5, 6, 7], 'e'.repeat(64)));
      else s.end(frame(encodeRefuse({ version: PROTOCOL_VERSION, reason: 'url', message: 'not here' })));
    });
    const seen: string[] = [];
    await backend([a.url], { unreachable: (e: WorkerUnreachable) => seen.push(e.reason) });
    await vi.waitFor(() => expect(a.sockets.length).toBeGreaterThanOrEqual(8), { timeout: 20_000 });
    // Before: a line per attempt (A, B, A, B, ...).
    expect(seen).toHaveLength(2);
  });

  it('a background reconnect reports each new failure once, and again after it connected', async () => {
    // Connection 0 is up, then dropped; 1-2 answer as another model's worker; 3-4 close at once;
    // 5 is up again and dropped; 6 another model again; 7 on is up.
    const a = await fake((s, n) => {
      if (n === 0 || n === 5) {
        s.write(welcome([0, 1, 2, 3, 4, 5, 6, 7]));
        setTimeout(() => s.destroy(), 50);
      } else if (n === 1 || n === 2 || n === 6) s.write(welcome([0, 1, 2, 3, 4, 5, 6, 7], OTHER_MODEL));
      else if (n === 3 || n === 4) s.destroy();
      else s.write(welcome([0, 1, 2, 3, 4, 5, 6, 7]));
    });
    const seen: string[] = [];
    const events: ClusterEvents = {
      up: (e: WorkerUp) => seen.push(`up ${e.url}`),
      unreachable: (e: WorkerUnreachable) => seen.push(`unreachable ${e.url}: ${e.reason}`),
    };
    const be = await backend([a.url], events);
    await vi.waitFor(() => expect(a.sockets.length).toBeGreaterThanOrEqual(8), { timeout: 20_000 });
    await vi.waitFor(() => expect(be.view.connections[0]?.usable).toBe(true), { timeout: 5_000 });
    const otherModel = `unreachable ${a.url}: worker ${a.url}: serves model eeeeeeeeeeeeeeee…, this coordinator runs ffffffffffffffff…`;
    // Before: no such event; serve logged nothing while a registered worker stayed out.
    expect(seen).toEqual([
      otherModel,
      expect.stringMatching(
        new RegExp(`^unreachable ${a.url}: worker ${a.url}: closed the connection during the handshake`),
      ),
      `up ${a.url}`,
      otherModel,
      `up ${a.url}`,
    ]);
  });
});

describe('the /ready description of many workers, or of URLs holding ")"', () => {
  it('/ready (ClusterHealth.coverage) lists the first 8 live workers, then a count', () => {
    const many = Array.from({ length: 20_000 }, (_, i) => ({ url: `ws://h${i}:1`, experts: [i % 8] }));
    const description = `remote experts on 20000 workers (${PlacementTable.of(many, 8).describe()}), fp32 wire, baseline balancing`;
    const health = ClusterHealth.watch({
      description,
      numExperts: 8,
      placement: many,
      membership: new StaticMembership(many.map((w) => w.url)),
      connections: () => {},
      reportsExits: false,
    });
    const d = health.coverage().description;
    // Before: about 250,000 characters, a line per worker.
    expect(d.length).toBeLessThan(2_000);
    expect(d).toMatch(/^remote experts on 20000 workers \(ws:\/\/h0:1: 0; .*; and 19,992 more\), fp32 wire/);
  });

  it('a "no live worker" detail quotes the first 3 departures, then counts the rest', () => {
    const many = Array.from({ length: 20_000 }, (_, i) => ({ url: `ws://h${i}:1`, experts: [i % 8] }));
    const downs: ((e: WorkerDown) => void)[] = [];
    const health = ClusterHealth.watch({
      description: `remote experts on 20000 workers (${PlacementTable.of(many, 8).describe()}), fp32 wire, baseline balancing`,
      numExperts: 8,
      placement: many,
      membership: new StaticMembership(many.map((w) => w.url)),
      connections: (l) => downs.push(l),
      reportsExits: false,
    });
    for (const w of many)
      if (w.experts[0] === 3) for (const l of downs) l({ url: w.url, reason: 'closed', drained: false });
    const c = health.coverage();
    expect(c.missing).toEqual([3]);
    expect(c.detail).toBe(
      'experts 3 have no live worker: worker ws://h3:1 closed; worker ws://h11:1 closed; worker ws://h19:1 closed; and 2497 more workers',
    );
  });

  it('a URL holding ")" does not garble it', () => {
    const workers = [
      { url: 'ws://h:1/a)b', experts: [0, 1, 2, 3] },
      { url: 'ws://c:1', experts: [4, 5, 6, 7] },
    ];
    const description = `remote experts on 2 workers (${PlacementTable.of(workers, 8).describe()}), fp32 wire, baseline balancing`;
    const health = ClusterHealth.watch({
      description,
      numExperts: 8,
      placement: workers,
      membership: new StaticMembership(workers.map((w) => w.url)),
      connections: () => {},
      reportsExits: false,
    });
    expect(health.coverage().description).toBe(description);
  });
});

describe('a join of a worker whose connection drains and never closes', () => {
  /** Connection 0: welcome and a drain notice in one read (or later); the TCP connection stays open. */
  const drainsForever = (s: Socket, n: number) => {
    if (n === 0) s.write(Buffer.concat([welcome([0, 1, 2, 3]), frame(encodeDrain({ reason: 'bye' }))]));
    else s.write(welcome([0, 1, 2, 3]));
  };

  it('settles (resolves or rejects) instead of waiting for a close that never comes', async () => {
    const a = await fake(drainsForever);
    const b = await fake((s) => s.write(welcome([4, 5, 6, 7])));
    const c = await fake((s) => s.write(welcome([0, 1, 2, 3])));
    const be = await backend([b.url, c.url]);
    // The first join takes the worker in draining (the drain came in the welcome's read).
    await expect(be.join(a.url)).resolves.toEqual({ url: a.url, experts: [0, 1, 2, 3] });
    expect(be.view.connections[2]?.draining).toBe(true);
    // The registry announces the URL again (a second record with the same URL).
    const second = be.join(a.url).then(
      () => 'resolved',
      () => 'rejected',
    );
    const outcome = await Promise.race([second, new Promise((r) => setTimeout(() => r('pending'), 3_000))]);
    // Before: 'pending' — reconnect() returns at once (the draining connection is
    // alive) and the waiter is settled only by the next handshake, after the worker closes.
    expect(outcome).not.toBe('pending');
  });

  it('through the registry queue (MemberChanges): 8 such URLs hold up no later join, nor their own leaves', async () => {
    const { MemberChanges } = await import('../../../coordinator/cluster/registry/member-changes.js');
    const b = await fake((s) => s.write(welcome([4, 5, 6, 7])));
    const c = await fake((s) => s.write(welcome([0, 1, 2, 3])));
    const be = await backend([b.url, c.url]);
    const hostile = await Promise.all(Array.from({ length: 8 }, () => fake(drainsForever)));
    for (const h of hostile) await be.join(h.url);
    const good = await fake((s) => s.write(welcome([0, 1, 2, 3, 4, 5, 6, 7])));
    const changes = new MemberChanges(() => {});
    const joined: string[] = [];
    const left: string[] = [];
    for (const h of hostile)
      changes.join(h.url, async () => {
        await be.join(h.url);
      });
    changes.join(good.url, async () => {
      await be.join(good.url);
      joined.push(good.url);
    });
    // The hostile records expire: the registry says they are gone.
    for (const h of hostile)
      changes.leave(h.url, async () => {
        be.leave(h.url, 'is gone from the registry (expired)');
        left.push(h.url);
      });
    await new Promise((r) => setTimeout(r, 3_000));
    // Before: [] and [] — the good worker never joins, the expired records never leave.
    expect(joined).toEqual([good.url]);
    expect(left.length).toBe(8);
  });
});

describe("a worker's close reason in the down event and request errors", () => {
  it('line breaks and a right-to-left override in the close reason are escaped', async () => {
    let closeNow: (() => void) | undefined;
    const reason = Buffer.from('bye\n{"level":50,"msg":"forged"}\u202eevil', 'utf8');
    const a = await fake((s, n) => {
      s.write(welcome([0, 1, 2, 3]));
      if (n === 0)
        closeNow = () => {
          const payload = Buffer.concat([Buffer.from([0x03, 0xe8]), reason]);
          s.write(Buffer.concat([Buffer.from([0x88, payload.length]), payload]));
          s.end();
        };
    });
    const b = await fake((s) => s.write(welcome([4, 5, 6, 7])));
    const downs: string[] = [];
    const be = await backend([a.url, b.url], { down: (e) => downs.push(e.reason) });
    const pending = be.view.connections[0]!.request(1, 1, new Uint8Array(64), 5_000).catch(
      (e: Error) => e.message,
    );
    closeNow!();
    const message = await pending;
    await vi.waitFor(() => expect(downs.length).toBe(1));
    // Before: both hold the raw "\n" and U+202E.
    expect(downs[0]).not.toMatch(/[\n\u202e]/);
    expect(message).not.toMatch(/[\n\u202e]/);
  });
});

describe("a bad notice in the welcome's read at start-up", () => {
  it('at start-up without skipFailed (a --workers list), a bad notice in the welcome read fails the start-up: no retry', async () => {
    const a = await fake((s) =>
      s.write(Buffer.concat([welcome([0, 1, 2, 3]), frame(encodeHoldings({ experts: [9] }))])),
    );
    const b = await fake((s) => s.write(welcome([4, 5, 6, 7])));
    await expect(backend([a.url, b.url])).rejects.toThrow(
      /dropped as the handshake ended: announced expert 9/,
    );
  });
});

describe('a worker that completes every handshake and drops just after the welcome read', () => {
  it('is reconnected with a growing backoff, not every 100 ms forever', async () => {
    const a = await fake((s, n) => {
      s.write(welcome([0, 1, 2, 3]));
      // The start-up connection stays; every later one drops 5 ms after its welcome (one read later:
      // handed over, so slot.attempt is reset to 0 each time).
      if (n > 0) setTimeout(() => s.destroy(), 5);
    });
    const b = await fake((s) => s.write(welcome([4, 5, 6, 7])));
    const c = await fake((s) => s.write(welcome([0, 1, 2, 3])));
    const { log, events } = recorder();
    await backend([a.url, b.url, c.url], events);
    a.sockets[0]!.destroy();
    await new Promise((r) => setTimeout(r, 3_000));
    // With backoff 100, 200, 400, 800, 1600 ms: at most 6 attempts in 3 s.
    // Before: about 25 connections (and 50 up/down events, each an error-level log line in serve).
    expect(a.sockets.length).toBeLessThanOrEqual(7);
    expect(log.length).toBeLessThanOrEqual(14);
  });
});
