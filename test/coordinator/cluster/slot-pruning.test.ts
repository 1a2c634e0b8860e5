// Worker slots of workers that left the membership are pruned once nothing of theirs is in
// progress, so a coordinator's slots, views and per-worker statistics follow the live membership,
// not its history (a registry writer used to grow them without bound: 20,000 URLs joined and left
// left 20,001 slots). Real worker processes, a refusing port and a silent loopback listener:
// (1) 2,000 URLs joined and left leave the live worker's slot alone; (2) a layer in flight while
// the slots before its workers' are pruned re-plans on the newer view and combines the reference
// result, its messages and round trips charged to the workers that sent them; (3) a pruned worker's
// series leave /metrics and the totals stay, and its URL joining again gets a fresh slot.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DispatchAccounting } from '../../../coordinator/cluster/dispatch-accounting.js';
import { summarizeDispatch } from '../../../coordinator/cluster/dispatch-stats.js';
import {
  RemoteExpertBackend,
  type RemoteTransfer,
} from '../../../coordinator/cluster/remote-expert-backend.js';
import type { MoeLayerEvent } from '../../../coordinator/moe/observer.js';
import { routingModelOfConfig } from '../../../coordinator/moe/routing-model.js';
import { ServerMetrics } from '../../../coordinator/server/metrics.js';
import type { MoeLayerPlan } from '../../../shared/families/layer-plan.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import { loadModelConfig } from '../../../shared/model/config.js';
import type { RoutingModel } from '../../../shared/routing/policy.js';
import { RoutingStats } from '../../../shared/routing/stats.js';
import { LoopbackListeners } from '../../helpers/loopback-listeners.js';
import { MODEL_DIR } from '../../helpers/paths.js';
import { restartablePort } from '../../helpers/ports.js';
import { parseScrape } from '../../helpers/prometheus.js';
import { layerInput, TINY_HIDDEN, TINY_MODEL, toExperts01 } from '../../helpers/tiny-layer.js';
import { startWorker, type WorkerProcess } from '../../helpers/worker-process.js';

const H = TINY_HIDDEN;
const E = 8;
const MODEL = TINY_MODEL;
const TOKENS = 4;
const x = layerInput(TOKENS);
/** Every token to experts 0 and 1 with weight 0.5 each. */
const assignment = toExperts01(TOKENS);
/** Router scores whose top two are experts 0 and 1, for every token. */
const probs = Float32Array.from({ length: TOKENS * E }, (_, i) => [0.5, 0.38][i % E] ?? 0.02);

let fingerprint: string;
let routing: RoutingModel;
/** d 4-7, a 0-3, b 4-7, c 0-3, all 0-7. */
let d: WorkerProcess;
let a: WorkerProcess;
let b: WorkerProcess;
let c: WorkerProcess;
let all: WorkerProcess;
const listeners = new LoopbackListeners();

beforeAll(async () => {
  const ckpt = await Checkpoint.open(MODEL_DIR);
  fingerprint = ckpt.fingerprint();
  await ckpt.close();
  routing = routingModelOfConfig(await loadModelConfig(MODEL_DIR));
  [d, a, b, c, all] = await Promise.all([
    startWorker('4-7'),
    startWorker('0-3'),
    startWorker('4-7'),
    startWorker('0-3'),
    startWorker('0-7'),
  ]);
}, 120_000);

afterAll(async () => {
  await listeners.close();
  await Promise.all([d, a, b, c, all].map((w) => w?.stop()));
});

/** The accounting's view of one computed layer (MoE layer 0). */
function observe(accounting: DispatchAccounting, transfer: RemoteTransfer): void {
  const event: MoeLayerEvent<RemoteTransfer> = {
    layer: 0,
    moeLayer: 0,
    plan: { numExperts: E } as unknown as MoeLayerPlan,
    x,
    probs,
    decision: { ...assignment, entropy: new Float32Array(TOKENS) },
    transfer,
  };
  accounting.observe(event);
}

async function until(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

describe('slots of workers that left', () => {
  it('are pruned: 2,000 URLs joined and left leave the live worker only', async () => {
    const be = await RemoteExpertBackend.connect(
      { workers: [all.url], wire: 'fp32', handshakeTimeoutMs: 500 },
      { fingerprint, ...MODEL },
    );
    const accounting = new DispatchAccounting(be, { fingerprint, ...MODEL }, routing);
    try {
      // Nothing listens on `refused`: a join fails at once and is retried in the background (a
      // timer) until its leave. The silent listener holds a handshake until the bound.
      const refused = await restartablePort();
      const silent = await restartablePort([refused]);
      await listeners.silent(silent);
      const BATCH = 100;
      for (let batch = 0; batch < 20; batch++) {
        const urls = Array.from({ length: BATCH }, (_, i) => `ws://127.0.0.1:${refused}/b${batch}-${i}`);
        // Half wait for their failed join (then a retry timer is pending), half leave while their
        // first attempt waits for a place or handshakes.
        const joins = urls.map((u) => be.join(u).catch((e: Error) => e));
        await Promise.all(joins.slice(0, BATCH / 2));
        for (const u of urls) expect(be.leave(u)).toBe(true);
        await Promise.all(joins);
        // Leaves while handshaking with a silent peer: pruned once the handshake bound ends it.
        const quiet = `ws://127.0.0.1:${silent}/b${batch}`;
        const join = be.join(quiet).catch((e: Error) => e);
        await new Promise((r) => setTimeout(r, 20));
        expect(be.leave(quiet)).toBe(true);
        expect(((await join) as Error).message).toMatch(/left the membership|no handshake/);
        // Each change rebuilds a view of the live membership, not of every URL seen: 1 slot after
        // every batch (before pruning: 101 more per batch, 2,021 at the end).
        await until(() => be.numWorkers === 1, 5_000);
        expect([batch, be.numWorkers]).toEqual([batch, 1]);
      }
      expect(be.view.connections.length).toBe(1);
      expect(be.placement.workers.map((w) => w.url)).toEqual([all.url]);
      expect(accounting.dispatchStats(false).workers.map((w) => w.url)).toEqual([all.url]);
      // The live worker still serves.
      const out = new Float32Array(TOKENS * H);
      const t = await be.compute(0, x, assignment, out);
      expect(t.messages.length).toBe(1);
      expect(out.some((v) => v !== 0)).toBe(true);
    } finally {
      await be.close();
    }
  }, 120_000);

  it('a layer in flight re-plans on a pruned view and combines the reference result', async () => {
    // d first: its slot and a's are pruned while the layer is out, so b and c move down two
    // indices in the view the layer re-plans on.
    const be = await RemoteExpertBackend.connect(
      { workers: [d.url, a.url, b.url, c.url], wire: 'fp32', balance: 'baseline' },
      { fingerprint, ...MODEL },
    );
    const accounting = new DispatchAccounting(be, { fingerprint, ...MODEL }, routing);
    try {
      // Experts 0 and 1 are held by a and c: baseline sends 0 to a, 1 to c.
      const reference = new Float32Array(TOKENS * H);
      const first = await be.compute(0, x, assignment, reference);
      expect(first.messages.map((m) => m.worker)).toEqual([1, 3]);
      await accounting.dispatchStats(true);
      const slotsPerRound: number[] = [];
      be.onRequestsSent(() => slotsPerRound.push(be.numWorkers));

      const out = new Float32Array(TOKENS * H);
      const inFlight = be.compute(0, x, assignment, out);
      // d answers nothing of this layer: its connection closes at once and its slot goes; a is gone
      // with its request, which fails over to c, planned on the view without d and a.
      expect(be.leave(d.url)).toBe(true);
      expect(be.leave(a.url, 'test: gone')).toBe(true);
      const t = await inFlight;
      expect(slotsPerRound).toEqual([4, 2]);
      expect(be.view.slots.map((s) => s.url)).toEqual([b.url, c.url]);
      // The same expert computations on the same rows (c's expert 0 equals a's), added in another
      // order: x + y is y + x in float32, so the result is the reference exactly.
      expect(Array.from(out)).toEqual(Array.from(reference));
      expect(t.retriedPairs).toBe(TOKENS);
      const cSlot = be.view.slots[1]!;
      // c's first reply at its index of the planned view (3), the re-sent one at its index after
      // pruning (1); both carry c's slot id.
      expect(t.messages.map((m) => [m.worker, m.slot])).toEqual([
        [3, cSlot.id],
        [1, cSlot.id],
      ]);
      // The round trips measured c, not b (index 1 of the planned view).
      expect(be.view.slots[0]!.secondsPerPair).toBeUndefined();
      expect(cSlot.secondsPerPair).toBeGreaterThan(0);
      observe(accounting, t);
      const stats = accounting.dispatchStats(false);
      expect(stats.workers.map((w) => w.url)).toEqual([b.url, c.url]);
      expect(summarizeDispatch(stats).perWorker.map((w) => [w.messages, w.pairs])).toEqual([
        [0, 0],
        [2, 2 * TOKENS],
      ]);
    } finally {
      await be.close();
    }
  }, 60_000);

  it("a pruned worker's series leave /metrics, totals stay, and its URL joins again into a fresh slot", async () => {
    const be = await RemoteExpertBackend.connect(
      { workers: [all.url, c.url], wire: 'fp32', balance: 'baseline' },
      { fingerprint, ...MODEL },
    );
    const accounting = new DispatchAccounting(be, { fingerprint, ...MODEL }, routing);
    const metrics = new ServerMetrics(routing, {
      routingStats: async () => new RoutingStats(routing).toJSON(),
      dispatchStats: async () => accounting.dispatchStats(false),
      engineSequences: async () => 0,
    });
    const scrape = async () => {
      const text = await metrics.render();
      return { text, value: parseScrape(text) };
    };
    const layer = async () => {
      const t = await be.compute(0, x, assignment, new Float32Array(TOKENS * H));
      observe(accounting, t);
      return t;
    };
    try {
      // Experts 0 and 1 on both workers: baseline sends 0 to `all`, 1 to c.
      for (let i = 0; i < 3; i++) expect((await layer()).messages.length).toBe(2);
      const before = await scrape();
      const cMessages = `kmoe_dispatch_messages_total{worker="${c.url}"}`;
      expect(before.value(cMessages)).toBe(3);
      const totals = summarizeDispatch(accounting.dispatchStats(false));
      expect(totals.messages).toBe(6);

      expect(be.leave(c.url)).toBe(true);
      await until(() => be.numWorkers === 1, 5_000);
      expect(be.numWorkers).toBe(1);
      const after = await scrape();
      // Every per-worker series of c is gone (bytes, messages, round trips); the totals are not.
      expect(after.text).not.toContain(`worker="${c.url}"`);
      expect(after.value(`kmoe_dispatch_messages_total{worker="${all.url}"}`)).toBe(3);
      // What went to it stays under worker="(departed)", so a sum over workers does not go down
      // (before, it fell from 6 to 3 messages while the summary kept 6).
      expect(after.value('kmoe_dispatch_messages_total{worker="(departed)"}')).toBe(3);
      for (const direction of ['out', 'in'])
        expect(after.value(`kmoe_dispatch_bytes_total{direction="${direction}",worker="(departed)"}`)).toBe(
          before.value(`kmoe_dispatch_bytes_total{direction="${direction}",worker="${c.url}"}`),
        );
      expect(after.value('kmoe_dispatch_bytes_per_token_layer')).toBe(
        before.value('kmoe_dispatch_bytes_per_token_layer'),
      );
      const kept = summarizeDispatch(accounting.dispatchStats(false));
      expect([kept.messages, kept.bytes, kept.pairs, kept.tokensSent]).toEqual([
        totals.messages,
        totals.bytes,
        totals.pairs,
        totals.tokensSent,
      ]);
      expect(kept.perWorker.map((w) => w.url)).toEqual([all.url]);

      // c joins again: a fresh slot, whose series starts from its new messages.
      expect(await be.join(c.url)).toEqual({ url: c.url, experts: [0, 1, 2, 3] });
      expect(be.view.slots.map((s) => s.url)).toEqual([all.url, c.url]);
      expect(be.view.slots[1]!.secondsPerPair).toBeUndefined();
      expect((await layer()).messages.length).toBe(2);
      const again = await scrape();
      expect(again.value(cMessages)).toBe(1);
      expect(again.value('kmoe_dispatch_messages_total{worker="(departed)"}')).toBe(3);
      expect(summarizeDispatch(accounting.dispatchStats(false)).messages).toBe(8);
    } finally {
      await be.close();
    }
  }, 60_000);
});
