// A broken or hostile worker against the coordinator's remote expert backend: real worker processes
// (A 0-3, B 4-7, C 0-7 as A's replica) on loopback, and a relay in this process in front of A that
// tampers with what A sends back (test/helpers/tampering-relay.ts). One MoE layer is computed on
// 6 tokens routed to experts 0-3; the reference is the same layer through A directly. A reply the
// coordinator must not believe is refused naming the worker, and with a replica the layer's result
// equals the reference (fp32 wire, same experts, same inputs: 1e-6 relative covers the order of
// additions).

import type { Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { WebSocketServer } from 'ws';
import {
  ExpertResultOverflowError,
  HandshakeError,
  WorkerRequestError,
} from '../../../coordinator/cluster/errors.js';
import {
  type ClusterEvents,
  RemoteExpertBackend,
  type WorkerUp,
} from '../../../coordinator/cluster/remote-expert-backend.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import type { ExpertAssignment } from '../../../shared/moe/expert-assignment.js';
import { randomClusterToken } from '../../../shared/protocol/auth.js';
import { encodeErrorReply, encodeHoldings, encodeWelcome } from '../../../shared/protocol/codec.js';
import { MODEL_DIR } from '../../helpers/paths.js';
import { relativeError } from '../../helpers/relative-error.js';
import {
  type RelayReply,
  startTamperingRelay,
  type TamperingRelay,
  wsFrameHeader,
} from '../../helpers/tampering-relay.js';
import { layerInput, TINY_DECODE_LIMITS, TINY_HIDDEN, TINY_MODEL } from '../../helpers/tiny-layer.js';
import { startWorker, type WorkerProcess } from '../../helpers/worker-process.js';

const H = TINY_HIDDEN;
const MODEL = TINY_MODEL;
const limits = TINY_DECODE_LIMITS;
const TOKENS = 6;

let a: WorkerProcess;
let b: WorkerProcess;
let c: WorkerProcess;
let fingerprint: string;
const relays: TamperingRelay[] = [];
const backends: RemoteExpertBackend[] = [];

const x = layerInput(TOKENS);
/** Token t to experts t % 4 and (t + 1) % 4: only A (or its replica C) computes them. */
const assignment: ExpertAssignment = {
  numTokens: TOKENS,
  offsets: Int32Array.from({ length: TOKENS + 1 }, (_, t) => 2 * t),
  experts: Int32Array.from({ length: 2 * TOKENS }, (_, j) => (Math.floor(j / 2) + (j % 2)) % 4),
  weights: Float32Array.from({ length: 2 * TOKENS }, (_, j) => (j % 2 === 0 ? 0.7 : 0.3)),
};

async function backend(workers: string[], events: ClusterEvents = {}): Promise<RemoteExpertBackend> {
  const be = await RemoteExpertBackend.connect(
    { workers, wire: 'fp32', timeoutMs: 20_000, balance: 'baseline' },
    { fingerprint, ...MODEL },
    events,
  );
  backends.push(be);
  return be;
}

async function layer(be: RemoteExpertBackend): Promise<Float32Array> {
  const acc = new Float32Array(TOKENS * H);
  await be.compute(1, x, assignment, acc);
  return acc;
}

async function relay(tamper: (r: RelayReply) => void): Promise<string> {
  const r = await startTamperingRelay(a.url, limits, tamper);
  relays.push(r);
  return r.url;
}

/** Results the relays tampered with. */
let poisoned = 0;

/** Sets element 3 of the second row of every result A sends to `value`. */
const poison =
  (value: number) =>
  (r: RelayReply): void => {
    if (r.msg?.type === 'result' && r.msg.partial instanceof Float32Array) {
      r.msg.partial[H + 3] = value;
      poisoned++;
    }
    r.send(r.bytes);
  };

let reference: Float32Array;

beforeAll(async () => {
  const ckpt = await Checkpoint.open(MODEL_DIR);
  fingerprint = ckpt.fingerprint();
  await ckpt.close();
  [a, b, c] = await Promise.all([startWorker('0-3'), startWorker('4-7'), startWorker('0-7')]);
  reference = await layer(await backend([a.url, b.url]));
});

// Each test's backends and relays are closed after it: connections to worker A from this process
// stay under its per-client limit (16) however many tests the file has.
afterEach(async () => {
  await Promise.all(backends.splice(1).map((be) => be.close()));
  await Promise.all(relays.splice(0).map((r) => r.close()));
});

afterAll(async () => {
  await Promise.all(backends.map((be) => be.close()));
  await Promise.all(relays.map((r) => r.close()));
  await Promise.all([a?.stop(), b?.stop(), c?.stop()]);
});

describe('a worker that answers with values no worker sends', () => {
  it('the reference layer is finite and not zero (the premise)', () => {
    expect(reference.every(Number.isFinite)).toBe(true);
    expect(reference.some((v) => v !== 0)).toBe(true);
  });

  it('an untampered relay gives the reference', async () => {
    const be = await backend([await relay((r) => r.send(r.bytes)), b.url]);
    expect(relativeError(await layer(be), reference)).toBeLessThan(1e-6);
  });

  it.each([
    ['NaN', Number.NaN],
    ['infinity', Number.POSITIVE_INFINITY],
  ])('a result holding %s is refused, naming the worker and the token', async (_name, value) => {
    const url = await relay(poison(value));
    const be = await backend([url, b.url]);
    const err = await layer(be).then(
      (acc) => new Error(`accepted: element ${H + 3} is ${acc[H + 3]}`),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkerRequestError);
    expect((err as WorkerRequestError).reason).toBe('bad-reply');
    expect((err as Error).message).toContain(url);
    expect((err as Error).message).toMatch(/non-finite value \(NaN or infinity\) for token \d+ at element 3/);
  });

  it('a finite result too large for float32 normalisation (3e38) fails the layer naming the worker, not the router', async () => {
    const url = await relay(poison(3e38));
    const err = await layer(await backend([url, b.url])).then(
      (acc) => new Error(`accepted: element ${H + 3} is ${acc[H + 3]}`),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ExpertResultOverflowError);
    expect((err as ExpertResultOverflowError).layer).toBe(1);
    expect((err as ExpertResultOverflowError).worker).toBe(url);
    expect((err as Error).message).toMatch(
      /^layer 1: the hidden state of token \d+ is beyond what float32 normalisation can hold after adding the workers' expert results \(finite, but far too large: the largest, 3\.0000000\d*e\+38, came from worker ws:/,
    );
  });

  it('a residual already too large before the results (a routing prior of 1e20) is not blamed on a worker', async () => {
    // What an API client's inline profile does: the layer adds the workers' ordinary results to
    // it; the engine's final-state check fails that request alone, not the whole step.
    const be = await backend([await relay((r) => r.send(r.bytes)), b.url]);
    const acc = new Float32Array(TOKENS * H);
    acc.fill(1e20, H, 2 * H);
    await be.compute(1, x, assignment, acc);
    expect(acc[H]).toBe(Math.fround(Math.fround(1e20) + reference[H]!));
    expect(Array.from(acc.subarray(0, H))).toEqual(Array.from(reference.subarray(0, H)));
  });

  it('a result holding NaN goes to the replica: the layer equals the reference', async () => {
    const be = await backend([await relay(poison(Number.NaN)), c.url]);
    const before = poisoned;
    const acc = await layer(be);
    // Baseline balancing gives experts 0 and 2 to the relay, 1 and 3 to C.
    expect(poisoned).toBeGreaterThan(before);
    expect(acc.every(Number.isFinite)).toBe(true);
    expect(relativeError(acc, reference)).toBeLessThan(1e-6);
  });
});

/** Writes a frame header announcing `total` bytes, then zeros until the socket closes; resolves with the bytes written. */
function flood(socket: Socket, total: number): Promise<number> {
  const chunk = Buffer.alloc(1 << 20);
  let written = 0;
  return new Promise((resolve) => {
    socket.once('close', () => resolve(written));
    socket.on('error', () => {});
    socket.write(wsFrameHeader(total));
    const pump = (): void => {
      while (written < total && !socket.destroyed) {
        const n = Math.min(chunk.length, total - written);
        written += n;
        if (!socket.write(chunk.subarray(0, n))) {
          socket.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
}

describe('a worker that repeats its holdings notice', () => {
  it('changes the placement once per new set, not once per notice', async () => {
    const url = await relay((r) => {
      if (r.msg?.type === 'result') {
        for (let i = 0; i < 50; i++) r.send(encodeHoldings({ experts: [0, 1, 2, 3] }));
        for (let i = 0; i < 50; i++) r.send(encodeHoldings({ experts: [0, 1, 2] }));
      }
      r.send(r.bytes);
    });
    const ups: WorkerUp[] = [];
    const be = await backend([url, b.url], { up: (e) => ups.push(e) });
    expect(relativeError(await layer(be), reference)).toBeLessThan(1e-6);
    // The welcome said 0-3: the first 50 notices repeat it; of the next 50 only the first is news.
    expect(ups).toEqual([{ url, experts: [0, 1, 2], why: 'holdings' }]);
    expect(be.placement.workers[0]!.experts).toEqual([0, 1, 2]);
  });

  it('compares notices as sets: the same experts in another order or repeated change nothing', async () => {
    const url = await relay((r) => {
      if (r.msg?.type === 'result') {
        // The welcome's set 0-3 in other orders and with repeats, then 0-2 the same ways.
        for (const experts of [
          [3, 2, 1, 0],
          [1, 0, 3, 2, 2],
          [0, 1, 2, 3, 0],
        ])
          r.send(encodeHoldings({ experts }));
        for (const experts of [
          [2, 1, 0],
          [0, 1, 2],
          [1, 2, 0, 0],
        ])
          r.send(encodeHoldings({ experts }));
      }
      r.send(r.bytes);
    });
    const ups: WorkerUp[] = [];
    const be = await backend([url, b.url], { up: (e) => ups.push(e) });
    expect(relativeError(await layer(be), reference)).toBeLessThan(1e-6);
    // Compared in order, each of the six notices differed from the one before: six rebuilds.
    expect(ups).toEqual([{ url, experts: [0, 1, 2], why: 'holdings' }]);
    expect(be.placement.workers[0]!.experts).toEqual([0, 1, 2]);
  });
});

describe('a worker whose welcome lists experts out of order and repeated', () => {
  it('is one holder of each, like a holdings notice: the welcome is read as a set', async () => {
    const url = await relay((r) => {
      if (r.msg?.type === 'welcome') {
        const { type: _type, ...welcome } = r.msg;
        r.send(encodeWelcome({ ...welcome, experts: [3, 0, 0, 1, 2, 2, 3] }));
        return;
      }
      // Then a holdings notice of the same set, which must change nothing.
      if (r.msg?.type === 'result') r.send(encodeHoldings({ experts: [0, 1, 2, 3] }));
      r.send(r.bytes);
    });
    const ups: WorkerUp[] = [];
    const be = await backend([url, b.url], { up: (e) => ups.push(e) });
    expect(be.placement.workers[0]!.experts).toEqual([0, 1, 2, 3]);
    // Listed twice, expert 0 had the worker twice among its holders.
    for (const e of [0, 1, 2, 3]) expect(be.placement.holdersOf(e)).toEqual([0]);
    expect(relativeError(await layer(be), reference)).toBeLessThan(1e-6);
    // The notice of the same set is no news (it was, compared with the welcome's list as sent).
    expect(ups).toEqual([]);
  });
});

/** Sends the worker's welcome and a holdings notice of `experts` in one socket write: one read. */
const welcomeThenHoldings =
  (experts: number[]) =>
  (r: RelayReply): void => {
    if (r.msg?.type !== 'welcome') {
      r.send(r.bytes);
      return;
    }
    const notice = encodeHoldings({ experts });
    r.socket.write(
      Buffer.concat([wsFrameHeader(r.bytes.byteLength), r.bytes, wsFrameHeader(notice.byteLength), notice]),
    );
  };

describe('a holdings notice that arrives before the coordinator can apply it', () => {
  it("at start-up, while another worker is still handshaking: the placement has the notice's set", async () => {
    const url = await relay(welcomeThenHoldings([0, 1, 2]));
    // The other worker's welcome comes 300 ms later, so the notice surely arrives before the
    // backend exists.
    const slow = await startTamperingRelay(c.url, limits, (r) => {
      if (r.msg?.type === 'welcome') setTimeout(() => r.send(r.bytes), 300);
      else r.send(r.bytes);
    });
    relays.push(slow);
    const ups: WorkerUp[] = [];
    const be = await backend([url, slow.url], { up: (e) => ups.push(e) });
    // Before: the welcome's 0-3, kept until the worker's set changed again.
    expect(be.placement.workers[0]!.experts).toEqual([0, 1, 2]);
    expect(be.placement.holdersOf(3)).toEqual([1]);
    expect(relativeError(await layer(be), reference)).toBeLessThan(1e-5);
    expect(ups).toEqual([]);
  });

  it("at a join, in the same read as the welcome: the join and the placement have the notice's set", async () => {
    const url = await relay(welcomeThenHoldings([0, 1, 2]));
    const ups: WorkerUp[] = [];
    const be = await backend([b.url, c.url], { up: (e) => ups.push(e) });
    await expect(be.join(url)).resolves.toEqual({ url, experts: [0, 1, 2] });
    expect(be.placement.workers[2]!.experts).toEqual([0, 1, 2]);
    expect(ups).toEqual([{ url, experts: [0, 1, 2], why: 'connected' }]);
  });

  it("a notice in the welcome's read naming an expert the model lacks fails the join; the retry connects", async () => {
    // Only the first connection's welcome comes with the bad notice.
    let welcomes = 0;
    const bad = welcomeThenHoldings([0, 9]);
    const url = await relay((r) => {
      if (r.msg?.type === 'welcome' && welcomes++ > 0) r.send(r.bytes);
      else bad(r);
    });
    const ups: WorkerUp[] = [];
    const be = await backend([b.url, c.url], { up: (e) => ups.push(e) });
    // Cut off as the notice is read; before, the join took the welcome's set and the notice was lost.
    await expect(be.join(url)).rejects.toThrow(/announced expert 9, but the model has 8/);
    expect(be.placement.workers[2]!.experts).toEqual([]);
    // A connection that dropped in its welcome's read is a failed attempt, retried with backoff.
    await vi.waitFor(() => expect(be.placement.workers[2]!.experts).toEqual([0, 1, 2, 3]), {
      timeout: 10_000,
    });
    expect(ups).toEqual([{ url, experts: [0, 1, 2, 3], why: 'connected' }]);
  });
});

describe('text a worker chooses', () => {
  it('an error reply with line breaks, terminal escapes and bidi controls is quoted as one bounded line', async () => {
    // A right-to-left override and isolate would show the rest of the line reversed in a terminal.
    const forged = `nope\nINFO coordinator: all good\u001b[2J\u202e\u2067doog lla${'x'.repeat(4000)}`;
    const url = await relay((r) => {
      if (r.msg?.type === 'result')
        r.send(encodeErrorReply({ id: r.msg.id, code: 'compute-failed', message: forged }));
      else r.send(r.bytes);
    });
    const err = await layer(await backend([url, b.url])).then(
      () => new Error('the layer completed'),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkerRequestError);
    const message = (err as Error).message;
    expect(message).toContain('replied with an error (compute-failed): nope\\u000aINFO coordinator');
    expect(message).toContain('all good\\u001b[2J\\u202e\\u2067doog lla');
    expect(['\n', '\u001b', '\u202e', '\u2067'].filter((c) => message.includes(c))).toEqual([]);
    expect(message.length).toBeLessThan(1000);
  });
});

describe('a worker that sends a frame far larger than any reply', () => {
  // 512 MiB announced; the coordinator asked for 6 tokens (a 6 KiB request).
  const HUGE = 512 * 2 ** 20;

  it('after the handshake: cut off within a few socket reads, naming the worker, and the replica answers', async () => {
    let flooded: Promise<number> | undefined;
    const url = await relay((r) => {
      if (r.msg?.type === 'result') flooded ??= flood(r.socket, HUGE);
      else r.send(r.bytes);
    });
    const solo = await backend([url, b.url]);
    const err = await layer(solo).then(
      () => new Error('the layer completed'),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkerRequestError);
    expect((err as Error).message).toContain(url);
    expect((err as Error).message).toMatch(/sent a frame of over \d+ bytes, larger than any reply/);
    // Not buffered whole: the socket closed after what two 64 KiB reads and the kernel's buffers hold.
    expect(await flooded).toBeLessThan(32 * 2 ** 20);

    const replicated = await backend([
      await relay((r) => {
        if (r.msg?.type === 'result') void flood(r.socket, HUGE);
        else r.send(r.bytes);
      }),
      c.url,
    ]);
    expect(relativeError(await layer(replicated), reference)).toBeLessThan(1e-6);
  });

  it('before the handshake, from a peer without any proof: refused at once, not after the handshake timeout', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    let flooded: Promise<number> | undefined;
    wss.on('connection', (_ws, req) => {
      flooded = flood(req.socket as Socket, HUGE);
    });
    const url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}`;
    const started = performance.now();
    const err = await RemoteExpertBackend.connect(
      { workers: [url], wire: 'fp32', clusterToken: randomClusterToken(), handshakeTimeoutMs: 60_000 },
      { fingerprint, ...MODEL },
    ).then(
      async (be) => {
        await be.close();
        return new Error('connected');
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(HandshakeError);
    expect((err as Error).message).toMatch(/sent a frame of over \d+ bytes during the handshake/);
    expect(performance.now() - started).toBeLessThan(30_000);
    expect(await flooded).toBeLessThan(32 * 2 ** 20);
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  });
});

describe('a worker URL that ws refuses (a registry record, a mistyped --advertise-url)', () => {
  it('every join of it fails at once with a HandshakeError; none hangs', async () => {
    const be = await backend([a.url, b.url]);
    // ws throws on a fragment before connecting. The second join of the same URL used to wait
    // forever (the first left its slot 'connecting'), and with it every later registry change.
    for (let i = 0; i < 2; i++) {
      const outcome = await Promise.race([
        be.join('ws://127.0.0.1:1/#x').then(
          () => 'joined',
          (e: unknown) => e,
        ),
        new Promise((r) => setTimeout(() => r('no answer within 5 s'), 5000)),
      ]);
      expect(outcome).toBeInstanceOf(HandshakeError);
      expect((outcome as Error).message).toMatch(/not a worker URL \(it has a fragment/);
      be.leave('ws://127.0.0.1:1/#x');
    }
    expect(relativeError(await layer(be), reference)).toBeLessThan(1e-6);
  });
});
