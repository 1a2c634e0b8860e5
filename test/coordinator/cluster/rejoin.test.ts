// A worker that leaves the membership (deregistered: it answers what it has) and joins again while
// its connection still has a request to answer (the registry's leave and join run beside the
// engine's steps): the join is routed to again. It used to resolve on the still-open connection
// while the slot stayed left, and that connection then closed once idle: the worker was never
// routed to again, though `kmoe serve` logged it joined (every request needing its experts 503).
// Real workers (A 0-3 behind a relay that holds A's replies until released, B 4-7), fp32 wire.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RemoteExpertBackend } from '../../../coordinator/cluster/remote-expert-backend.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import { MODEL_DIR } from '../../helpers/paths.js';
import { type RelayReply, startTamperingRelay, type TamperingRelay } from '../../helpers/tampering-relay.js';
import {
  layerInput,
  TINY_DECODE_LIMITS,
  TINY_HIDDEN,
  TINY_MODEL,
  toExperts01,
} from '../../helpers/tiny-layer.js';
import { startWorker, type WorkerProcess } from '../../helpers/worker-process.js';

const H = TINY_HIDDEN;
const MODEL = TINY_MODEL;
const limits = TINY_DECODE_LIMITS;
const TOKENS = 4;
const x = layerInput(TOKENS);
/** Every token to experts 0 and 1: only A holds them. */
const assignment = toExperts01(TOKENS);

let a: WorkerProcess;
let b: WorkerProcess;
let relay: TamperingRelay;
let fingerprint: string;
/** A's results held by the relay while `holding` (sent on when released). */
let holding = false;
const held: RelayReply[] = [];
let resultsSeen = 0;

beforeAll(async () => {
  const ckpt = await Checkpoint.open(MODEL_DIR);
  fingerprint = ckpt.fingerprint();
  await ckpt.close();
  [a, b] = await Promise.all([startWorker('0-3'), startWorker('4-7')]);
  relay = await startTamperingRelay(a.url, limits, (r) => {
    if (r.msg?.type === 'result') resultsSeen++;
    if (holding && r.msg?.type === 'result') held.push(r);
    else r.send(r.bytes);
  });
});

afterAll(async () => {
  await relay?.close();
  await Promise.all([a?.stop(), b?.stop()]);
});

describe('a worker that leaves and joins again while a request of its is in flight', () => {
  it('is routed to again after the join', async () => {
    const be = await RemoteExpertBackend.connect(
      { workers: [relay.url, b.url], wire: 'fp32', timeoutMs: 20_000, balance: 'baseline' },
      { fingerprint, ...MODEL },
    );
    try {
      const reference = new Float32Array(TOKENS * H);
      await be.compute(1, x, assignment, reference);

      holding = true;
      const inFlight = new Float32Array(TOKENS * H);
      const first = be.compute(1, x, assignment, inFlight);
      const seen = resultsSeen;
      while (held.length === 0) await new Promise((r) => setTimeout(r, 10));
      expect(be.leave(relay.url)).toBe(true);
      expect(await be.join(relay.url)).toEqual({ url: relay.url, experts: [0, 1, 2, 3] });
      holding = false;
      for (const r of held.splice(0)) r.send(r.bytes);
      await first;
      expect(Array.from(inFlight)).toEqual(Array.from(reference));
      expect(resultsSeen).toBe(seen + 1);

      // The next layers go to A again (its experts have no other holder), on the same connection.
      await new Promise((r) => setTimeout(r, 50));
      for (let i = 0; i < 2; i++) {
        const again = new Float32Array(TOKENS * H);
        await be.compute(1, x, assignment, again);
        expect(Array.from(again)).toEqual(Array.from(reference));
      }
      expect(be.view.connections[0]?.usable).toBe(true);
    } finally {
      await be.close();
    }
  });
});
