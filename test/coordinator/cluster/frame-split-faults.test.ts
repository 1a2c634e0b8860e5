// Faults on some pieces of a share cut to fit a worker's frame limit (frame-split.test.ts has the
// fault-free engine): real worker processes of the demo model, a relay (real loopback sockets) in
// front of worker A (experts 0-3, 10 KiB frame limit: about 9 fp32 rows a frame). 40 tokens routed
// to experts 0-3 make A's share about 5 pieces; C (0-7) is the replica. Reference: the same layer
// computed by C alone, in one frame. Every fault leaves each pair answered once and the reference
// result; a worker whose limit is smaller than one token has its pairs sent to the replica.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  RemoteExpertBackend,
  type RemoteTransfer,
} from '../../../coordinator/cluster/remote-expert-backend.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import type { ExpertAssignment } from '../../../shared/moe/expert-assignment.js';
import { encodeErrorReply, encodeWelcome } from '../../../shared/protocol/codec.js';
import type { WireDType } from '../../../shared/protocol/wire-dtype.js';
import { MODEL_DIR } from '../../helpers/paths.js';
import { relativeError } from '../../helpers/relative-error.js';
import { type RelayReply, startTamperingRelay, type TamperingRelay } from '../../helpers/tampering-relay.js';
import { layerInput, TINY_DECODE_LIMITS, TINY_HIDDEN, TINY_MODEL } from '../../helpers/tiny-layer.js';
import { startWorker, type WorkerProcess } from '../../helpers/worker-process.js';

const H = TINY_HIDDEN;
const TOKENS = 40;

let a: WorkerProcess;
let b: WorkerProcess;
let c: WorkerProcess;
let fingerprint: string;
const relays: TamperingRelay[] = [];
const backends: RemoteExpertBackend[] = [];

function assignmentOf(tokens: number): ExpertAssignment {
  return {
    numTokens: tokens,
    offsets: Int32Array.from({ length: tokens + 1 }, (_, t) => 2 * t),
    experts: Int32Array.from({ length: 2 * tokens }, (_, j) => (Math.floor(j / 2) + (j % 2)) % 4),
    weights: Float32Array.from({ length: 2 * tokens }, (_, j) => (j % 2 === 0 ? 0.7 : 0.3)),
  };
}
const x = layerInput(TOKENS);
const assignment = assignmentOf(TOKENS);

async function backend(workers: string[], timeoutMs = 20_000, wire: WireDType = 'fp32') {
  const be = await RemoteExpertBackend.connect(
    { workers, wire, timeoutMs, balance: 'baseline' },
    { fingerprint, ...TINY_MODEL },
  );
  backends.push(be);
  return be;
}

async function layer(be: RemoteExpertBackend): Promise<{ acc: Float32Array; t: RemoteTransfer }> {
  const acc = new Float32Array(TOKENS * H);
  const t = await be.compute(1, x, assignment, acc);
  return { acc, t };
}

async function relay(
  tamper: (r: RelayReply) => void,
  observe?: Parameters<typeof startTamperingRelay>[3],
): Promise<string> {
  const r = await startTamperingRelay(a.url, TINY_DECODE_LIMITS, tamper, observe);
  relays.push(r);
  return r.url;
}

/** A relay to worker A whose welcome claims frames of at most `maxFrameBytes` (A's own limit is larger). */
function claimingLimit(maxFrameBytes: number): Promise<string> {
  return relay((r) => {
    if (r.msg?.type === 'welcome') {
      const { type: _t, ...w } = r.msg;
      r.send(encodeWelcome({ ...w, maxFrameBytes }));
      return;
    }
    r.send(r.bytes);
  });
}

/** A relay to worker A that passes everything on but A's second result, which `act` handles instead. */
function onSecondResult(act: (r: RelayReply, id: number) => void): Promise<string> {
  let results = 0;
  return relay((r) => {
    if (r.msg?.type === 'result' && ++results === 2) act(r, r.msg.id);
    else r.send(r.bytes);
  });
}

/** Every (token, expert) pair answered exactly once across the layer's messages. */
function pairsAnswered(t: RemoteTransfer): number {
  return t.messages.reduce((n, m) => n + m.pairs, 0);
}

let reference: Float32Array;

beforeAll(async () => {
  const ckpt = await Checkpoint.open(MODEL_DIR);
  fingerprint = ckpt.fingerprint();
  await ckpt.close();
  [a, b, c] = await Promise.all([
    startWorker('0-3', ['--max-frame-mb', '0.01']),
    startWorker('4-7'),
    startWorker('0-7'),
  ]);
  reference = (await layer(await backend([c.url]))).acc;
}, 120_000);

afterEach(async () => {
  await Promise.all(backends.splice(1).map((be) => be.close()));
  await Promise.all(relays.splice(0).map((r) => r.close()));
});

afterAll(async () => {
  await Promise.all(backends.map((be) => be.close()));
  await Promise.all(relays.map((r) => r.close()));
  await Promise.all([a?.stop(), b?.stop(), c?.stop()]);
});

describe('faults on some pieces of a cut share', () => {
  it('untampered: pieces, unique ids, at most two at the worker at once, reference result', async () => {
    const ids: number[] = [];
    let outstanding = 0;
    let most = 0;
    const be = await backend([
      await relay(
        (r) => {
          if (r.msg?.type === 'result') {
            ids.push(r.msg.id);
            outstanding--;
          }
          r.send(r.bytes);
        },
        (msg) => {
          if (msg?.type === 'dispatch') most = Math.max(most, ++outstanding);
        },
      ),
      c.url,
    ]);
    const { acc, t } = await layer(be);
    expect(relativeError(acc, reference)).toBeLessThan(1e-5);
    const pieces = t.messages.filter((m) => m.worker === 0).length;
    expect(pieces).toBeGreaterThan(2);
    // One computing, one queued behind it: the rest wait at the coordinator, not at the worker.
    expect(most).toBe(2);
    expect(new Set(ids).size).toBe(ids.length);
    expect(pairsAnswered(t)).toBe(2 * TOKENS);
  });

  it('a not-held reply on the second piece: that piece re-planned, every pair answered once', async () => {
    const be = await backend([
      await onSecondResult((r, id) =>
        r.send(encodeErrorReply({ id, code: 'not-held', message: 'unloaded meanwhile' })),
      ),
      c.url,
    ]);
    const { acc, t } = await layer(be);
    expect(relativeError(acc, reference)).toBeLessThan(1e-5);
    expect(pairsAnswered(t)).toBe(2 * TOKENS);
    expect(t.retriedPairs).toBeGreaterThan(0);
    expect(t.retriedPairs).toBeLessThan(2 * TOKENS);
  });

  it('the reply of the second piece never comes: timeout, the rest go to the replica', async () => {
    const be = await backend([await onSecondResult(() => {}), c.url], 1500);
    const { acc, t } = await layer(be);
    expect(relativeError(acc, reference)).toBeLessThan(1e-5);
    expect(pairsAnswered(t)).toBe(2 * TOKENS);
  });

  it('the connection drops after the first piece: the rest go to the replica', async () => {
    const be = await backend([await onSecondResult((r) => r.socket.destroy()), c.url]);
    const { acc, t } = await layer(be);
    expect(relativeError(acc, reference)).toBeLessThan(1e-5);
    expect(pairsAnswered(t)).toBe(2 * TOKENS);
  });

  it('ids wrap below 2^32 with pieces (the worker refuses an id beyond u32)', async () => {
    const ids: number[] = [];
    const be = await backend([
      await relay((r) => {
        if (r.msg?.type === 'result') ids.push(r.msg.id);
        r.send(r.bytes);
      }),
      b.url,
    ]);
    for (const start of [0xffffffff - 3, 0xffffffff - 1, 0xfffffffe - 5]) {
      (be as unknown as { nextId: number }).nextId = start;
      const { acc, t } = await layer(be);
      expect(relativeError(acc, reference)).toBeLessThan(1e-5);
      expect(t.firstId + 1).toBeLessThanOrEqual(0xffffffff);
    }
    expect(ids.every((id) => id < 0xffffffff)).toBe(true);
  });

  it('a worker advertising a smaller limit than it has (one row a frame) still gives the reference', async () => {
    const be = await backend([await claimingLimit(1300), b.url]);
    const { acc, t } = await layer(be);
    expect(relativeError(acc, reference)).toBeLessThan(1e-5);
    expect(t.messages.length).toBe(TOKENS);
  });
});

describe('a worker that cannot take one token', () => {
  it('has its pairs sent to a replica, as a worker that failed the layer', async () => {
    // Less than one fp32 row of hidden 256 (1 KiB) with its header.
    const be = await backend([await claimingLimit(1000), c.url]);
    const { acc, t } = await layer(be);
    expect(relativeError(acc, reference)).toBeLessThan(1e-5);
    // Every answer came from C: A was sent nothing, and what was planned for it was re-sent.
    expect(t.messages.every((m) => m.worker === 1)).toBe(true);
    expect(t.retriedPairs).toBeGreaterThan(0);
    expect(pairsAnswered(t)).toBe(2 * TOKENS);
  });
});
