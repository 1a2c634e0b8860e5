// Dispatch accounting off the critical path, against two real workers (experts 0-3 and 4-7): the
// backend runs its onRequestsSent tasks while a layer's requests are in flight, a task's failure
// fails that layer only once its replies are in, and DispatchAccounting costs a layer from the
// router scores it observed even after their buffer is reused, on the placement it was planned on.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccountingError, DispatchAccounting } from '../../../coordinator/cluster/dispatch-accounting.js';
import { summarizeDispatch } from '../../../coordinator/cluster/dispatch-stats.js';
import {
  RemoteExpertBackend,
  type RemoteTransfer,
} from '../../../coordinator/cluster/remote-expert-backend.js';
import type { MoeLayerEvent } from '../../../coordinator/moe/observer.js';
import { routingModelOfConfig } from '../../../coordinator/moe/routing-model.js';
import type { MoeLayerPlan } from '../../../shared/families/layer-plan.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import { loadModelConfig } from '../../../shared/model/config.js';
import type { F32Tensor } from '../../../shared/tensor.js';
import { MODEL_DIR } from '../../helpers/paths.js';
import { startWorker, type WorkerProcess } from '../../helpers/worker-process.js';

const H = 256;
const E = 8;
const MODEL = { numLayers: 4, numExperts: E, hidden: H, nativeK: 2 };
let workers: WorkerProcess[] = [];
let fingerprint: string;

beforeAll(async () => {
  const ckpt = await Checkpoint.open(MODEL_DIR);
  fingerprint = ckpt.fingerprint();
  await ckpt.close();
  workers = await Promise.all([startWorker('0-3'), startWorker('4-7')]);
}, 120_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
});

const connect = () =>
  RemoteExpertBackend.connect(
    { workers: workers.map((w) => w.url), wire: 'fp32' },
    { fingerprint, ...MODEL },
  );

/** One token routed to `experts` with equal weights. */
function oneToken(experts: readonly number[]) {
  const x: F32Tensor = { dtype: 'float32', shape: [1, H], data: new Float32Array(H).fill(0.01) };
  const assignment = {
    numTokens: 1,
    offsets: Int32Array.from([0, experts.length]),
    experts: Int32Array.from(experts),
    weights: new Float32Array(experts.length).fill(1 / experts.length),
  };
  return { x, assignment };
}

/** Router scores of one token whose two largest are `a` and `b`. */
function scores(a: number, b: number): Float32Array {
  const p = new Float32Array(E).fill(0.02);
  p[a] = 0.5;
  p[b] = 0.38;
  return p;
}

describe('onRequestsSent', () => {
  it('runs while the layer is in flight; a task that throws fails the layer after its replies, and the next layer runs', async () => {
    const backend = await connect();
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const inFlight: number[] = [];
      let calls = 0;
      backend.onRequestsSent(() => {
        calls++;
        inFlight.push(backend.view.connections.reduce((n, c) => n + (c?.inflightPairs ?? 0), 0));
        if (calls === 1) throw new Error('bookkeeping failed');
      });
      const { x, assignment } = oneToken([1, 5]);
      const acc = new Float32Array(H);
      await expect(backend.compute(0, x, assignment, acc)).rejects.toThrow('bookkeeping failed');
      // Both requests were out when the task ran, and both were answered before the layer failed.
      expect(inFlight).toEqual([2]);
      expect(backend.view.connections.map((c) => c?.inflightPairs)).toEqual([0, 0]);
      const t = await backend.compute(1, x, assignment, acc);
      expect(t.messages.map((m) => m.worker).sort()).toEqual([0, 1]);
      expect(inFlight).toEqual([2, 2]);
      expect(acc.some((v) => v !== 0)).toBe(true);
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await backend.close();
    }
  }, 60_000);
});

/** A backend and the accounting that observes it, as connectExperts pairs them. */
async function accounted() {
  const backend = await connect();
  const routing = routingModelOfConfig(await loadModelConfig(MODEL_DIR));
  return { backend, accounting: new DispatchAccounting(backend, { fingerprint, ...MODEL }, routing) };
}

/** Sends one token to `experts` as MoE layer `layer`, then shows the accounting the layer with `probs`. */
async function sendObserved(
  { backend, accounting }: Awaited<ReturnType<typeof accounted>>,
  layer: number,
  experts: readonly number[],
  probs: Float32Array,
): Promise<void> {
  const { x, assignment } = oneToken(experts);
  const transfer = await backend.compute(layer, x, assignment, new Float32Array(H));
  const event: MoeLayerEvent<RemoteTransfer> = {
    layer,
    moeLayer: layer,
    plan: { numExperts: E } as unknown as MoeLayerPlan,
    x,
    probs,
    decision: { ...assignment, entropy: new Float32Array(1) },
    transfer,
  };
  accounting.observe(event);
}

describe('DispatchAccounting', () => {
  it('costs a layer from the scores it observed, after the next layer is sent or when read', async () => {
    const a = await accounted();
    try {
      // Sent as native top-2 would send it: experts 0 and 1, both on worker 0 (one message).
      const probs = scores(0, 1);
      await sendObserved(a, 0, [0, 1], probs);
      // The forward pass reuses the scores' buffer for the next layer: native top-2 of these would
      // be experts 0 and 4, two messages. The queued layer must be costed on the scores it saw.
      probs.set(scores(0, 4));
      const first = summarizeDispatch(a.accounting.dispatchStats(false));
      expect(first.tokenLayers).toBe(1);
      expect(first.messages).toBe(1);
      expect(first.vsNative).toBe(1);
      // Layer 1 is costed while layer 2's requests are out; reading costs layer 2.
      probs.set(scores(0, 1));
      await sendObserved(a, 1, [0, 1], probs);
      await sendObserved(a, 2, [0, 1], probs);
      const all = summarizeDispatch(a.accounting.dispatchStats(true));
      expect(all.tokenLayers).toBe(3);
      expect(all.vsNative).toBe(1);
      expect(summarizeDispatch(a.accounting.dispatchStats(false)).tokenLayers).toBe(0);
    } finally {
      await a.backend.close();
    }
  }, 60_000);

  it('reports a costing failure when the statistics are read, without failing the layer it ran in', async () => {
    const a = await accounted();
    try {
      // Scores of the wrong width: routing them natively throws inside the costing, which runs
      // while the next layer's requests are out; that layer itself succeeds.
      await sendObserved(a, 0, [0, 1], new Float32Array(3));
      const { x, assignment } = oneToken([0, 1]);
      const next = await a.backend.compute(1, x, assignment, new Float32Array(H));
      expect(next.messages.length).toBe(1);
      expect(() => a.accounting.dispatchStats(false)).toThrow(AccountingError);
      // Reported once; the statistics stay readable.
      expect(summarizeDispatch(a.accounting.dispatchStats(false)).tokenLayers).toBe(0);
    } finally {
      await a.backend.close();
    }
  }, 60_000);
});
