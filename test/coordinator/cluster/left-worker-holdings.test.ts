// A worker that left without `gone` keeps its connection until its requests are answered (leave ->
// idle -> close). A holdings notice read on that connection in the meantime rebuilt the view with
// the left worker's new experts and emitted `up` (why: holdings) for a URL that left; `kmoe serve`
// wires `up` to ClusterHealth.joined, which forgot the departure: /ready said covered with the sole
// holder of experts 0-3 gone, until that URL joined again. From a hostile review of slot pruning.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterHealth } from '../../../coordinator/cluster/cluster-health.js';
import type { MemberJoined, MemberLeft, Membership } from '../../../coordinator/cluster/membership.js';
import {
  RemoteExpertBackend,
  type WorkerDown,
  type WorkerUp,
} from '../../../coordinator/cluster/remote-expert-backend.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import { encodeHoldings } from '../../../shared/protocol/codec.js';
import { MODEL_DIR } from '../../helpers/paths.js';
import { startTamperingRelay, type TamperingRelay } from '../../helpers/tampering-relay.js';
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
const assignment = toExperts01(TOKENS);

class Registry implements Membership {
  private readonly leaves: ((e: MemberLeft) => void)[] = [];
  constructor(private readonly urls: string[]) {}
  members(): readonly string[] {
    return this.urls;
  }
  onLeave(l: (e: MemberLeft) => void): void {
    this.leaves.push(l);
  }
  onJoin(_l: (e: MemberJoined) => void): void {}
  leave(e: MemberLeft): void {
    for (const l of this.leaves) l(e);
  }
}

let a: WorkerProcess;
let b: WorkerProcess;
let fingerprint: string;
let relay: TamperingRelay | undefined;

beforeAll(async () => {
  const ckpt = await Checkpoint.open(MODEL_DIR);
  fingerprint = ckpt.fingerprint();
  await ckpt.close();
  [a, b] = await Promise.all([startWorker('0-3'), startWorker('4-7')]);
}, 120_000);

afterAll(async () => {
  await relay?.close();
  await Promise.all([a, b].map((w) => w?.stop()));
});

describe('a holdings notice on the connection of a worker that left', () => {
  it('does not bring the left worker back into /ready', async () => {
    let leftAt = -1;
    const events: string[] = [];
    // A's replies pass through; with its last result it also sends a holdings notice (0-4), as a
    // worker being rebalanced while it shuts down would.
    relay = await startTamperingRelay(a.url, limits, (r) => {
      if (r.msg?.type === 'result') r.send(encodeHoldings({ experts: [0, 1, 2, 3, 4] }));
      r.send(r.bytes);
    });
    const url = relay.url;
    const downs: ((e: WorkerDown) => void)[] = [];
    const ups: ((e: WorkerUp) => void)[] = [];
    const be = await RemoteExpertBackend.connect(
      { workers: [url, b.url], wire: 'fp32', balance: 'baseline' },
      { fingerprint, ...MODEL },
      {
        down: (e) => {
          events.push(`down ${e.url}`);
          for (const l of downs) l(e);
        },
        up: (e) => {
          events.push(`up ${e.url} ${e.why}${leftAt >= 0 ? ' (after its leave)' : ''}`);
          for (const l of ups) l(e);
        },
      },
    );
    const registry = new Registry([url, b.url]);
    const health = ClusterHealth.watch({
      description: be.description,
      numExperts: 8,
      placement: be.placement.workers,
      membership: registry,
      connections: (l) => downs.push(l),
      connectionsUp: (l) => ups.push(l),
      reportsExits: false,
    });
    try {
      expect(health.coverage().covered).toBe(true);
      // A layer to A is in flight when A deregisters (serve.ts: health hears the registry, the
      // engine's backend is told to leave without `gone`).
      const inFlight = be.compute(0, x, assignment, new Float32Array(TOKENS * H));
      leftAt = events.length;
      registry.leave({ url, reason: `worker a (${url}) deregistered` });
      expect(be.leave(url)).toBe(true);
      expect(health.coverage().covered).toBe(false);
      await inFlight;
      // Its connection closes once idle and its slot is pruned.
      const deadline = Date.now() + 5_000;
      while (be.numWorkers !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(be.view.slots.map((s) => s.url)).toEqual([b.url]);
      // No worker holds 0-3 any more: /ready must not say covered, and nothing is `up` after the leave.
      expect(health.coverage()).toMatchObject({ covered: false, missing: [0, 1, 2, 3] });
      expect(events.slice(leftAt)).toEqual([]);
    } finally {
      health.close();
      await be.close();
    }
  }, 60_000);
});
