// The engine with its experts in real worker processes on loopback, against the same engine with
// local experts. fp32 on the wire changes only the order of two fp32 additions per element, so
// logits agree to 1e-5 relative (max-abs diff over max-abs value); bf16 rounds each hidden state
// and partial sum to 8 significant bits, and perplexity must stay within 0.2% of local.

import { mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { WebSocketServer } from 'ws';
import { summarizeDispatch } from '../../../coordinator/cluster/dispatch-stats.js';
import { type LocalCluster, startLocalCluster } from '../../../coordinator/cluster/local-cluster.js';
import { RemoteExpertBackend } from '../../../coordinator/cluster/remote-expert-backend.js';
import type { StepRequest } from '../../../coordinator/engine/engine.js';
import { EngineClient } from '../../../coordinator/engine/engine-client.js';
import { evaluatePerplexity } from '../../../coordinator/evaluation/perplexity.js';
import { readU16Ids } from '../../../shared/data/token-ids.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import { decodeMessage, encodeWelcome } from '../../../shared/protocol/codec.js';
import { frameBytes } from '../../../shared/protocol/frame.js';
import { PROTOCOL_VERSION } from '../../../shared/protocol/messages.js';
import type { WireDType } from '../../../shared/protocol/wire-dtype.js';
import { EVAL_DIR, MODEL_DIR, referenceCases } from '../../helpers/paths.js';
import { relativeError } from '../../helpers/relative-error.js';
import { SCHED_BATCH, threadPolicies } from '../../helpers/thread-policies.js';
import { startWorker } from '../../helpers/worker-process.js';

const settings = { device: 'cpu' as const, threads: 2, expertWeights: 'fp32' as const };
// One pool of workers serves every placement below (a worker accepts many coordinators).
const POOL = ['0-7', '0-3', '4-7', '0-1', '2-3', '4-5', '6-7', '0-4', '5-7', '3-7'];
const PLACEMENTS: Record<string, string[]> = {
  '1 worker': ['0-7'],
  '2 workers': ['0-3', '4-7'],
  '4 workers': ['0-1', '2-3', '4-5', '6-7'],
  'uneven 0-4 / 5-7': ['0-4', '5-7'],
  'replicas 0-4 / 3-7': ['0-4', '3-7'],
};

let cluster: LocalCluster;
let local: EngineClient;
const urlOf = (set: string) => cluster.urls[POOL.indexOf(set)]!;

beforeAll(async () => {
  const sets = POOL.map((s) => {
    const [a, b] = s.split('-').map(Number);
    return Array.from({ length: b! - a! + 1 }, (_, i) => a! + i);
  });
  [cluster, local] = await Promise.all([
    startLocalCluster({ modelDir: MODEL_DIR, expertSets: sets, threads: 1 }),
    EngineClient.start({ modelDir: MODEL_DIR, settings }),
  ]);
});

afterAll(async () => {
  await local?.close();
  await cluster?.stop();
});

function remote(
  sets: readonly string[],
  wireDtype: WireDType = 'fp32',
  timeoutMs?: number,
): Promise<EngineClient> {
  return EngineClient.start({
    modelDir: MODEL_DIR,
    settings,
    experts: { kind: 'remote', workers: sets.map(urlOf), wireDtype, ...(timeoutMs ? { timeoutMs } : {}) },
  });
}

/** Prefill of every reference case in one batch, then ragged steps and decode through the cache. */
async function script(engine: EngineClient, tag: string): Promise<Float32Array[]> {
  const cases = referenceCases();
  const id = (c: { name: string }) => `${tag}-${c.name}`;
  const out: Float32Array[] = [];
  const step = async (reqs: StepRequest[]) => {
    const r = await engine.step(reqs);
    out.push(r.logits);
    return r;
  };
  await step(cases.map((c) => ({ seqId: id(c), tokens: c.ids.slice(0, 40) })));
  await step(cases.map((c, i) => ({ seqId: id(c), tokens: c.ids.slice(40, 41 + i * 3) })));
  for (let t = 48; t < 52; t++) await step(cases.map((c) => ({ seqId: id(c), tokens: [c.ids[t]!] })));
  await step([{ seqId: `${tag}-k1`, tokens: cases[0]!.ids.slice(0, 20), routing: 'topk:1' }]);
  await engine.release([...cases.map(id), `${tag}-k1`]);
  return out;
}

describe('remote experts give the single-process logits (fp32 wire, 1e-5 relative)', () => {
  let expected: Float32Array[];
  beforeAll(async () => {
    expected = await script(local, 'local');
  });

  it.each(Object.entries(PLACEMENTS))('%s', async (_name, sets) => {
    const engine = await remote(sets);
    try {
      expect(engine.info.placement.map((p) => p.url)).toEqual(sets.map(urlOf));
      expect(engine.info.experts).toMatch(`remote experts on ${sets.length} worker`);
      const got = await script(engine, 'remote');
      expect(got.length).toBe(expected.length);
      got.forEach((logits, i) => {
        expect(logits.length).toBe(expected[i]!.length);
        expect(relativeError(logits, expected[i]!)).toBeLessThan(1e-5);
      });
      // Every expert-token pair of every step went to some worker, each worker got work.
      const stats = summarizeDispatch((await engine.dispatchStats())!);
      expect(stats.perWorker.every((w) => w.pairs > 0)).toBe(true);
    } finally {
      await engine.close();
    }
  });
});

describe('local workers', () => {
  it('run under SCHED_BATCH (--sched auto on a host whose chrt can set it)', () => {
    for (const w of cluster.workers)
      expect(new Set(threadPolicies(w.process.pid!))).toEqual(new Set([SCHED_BATCH]));
  });
});

describe('two-batch overlap (EngineOptions.overlap)', () => {
  it('gives the single-process logits (fp32 wire, 1e-5 relative) with micro-batches interleaved', async () => {
    const expected = await script(local, 'local-overlap');
    const engine = await EngineClient.start({
      modelDir: MODEL_DIR,
      settings,
      experts: { kind: 'remote', workers: PLACEMENTS['2 workers']!.map(urlOf), wireDtype: 'fp32' },
      overlap: true,
    });
    try {
      const got = await script(engine, 'overlap');
      expect(got.length).toBe(expected.length);
      for (const [i, logits] of got.entries()) expect(relativeError(logits, expected[i]!)).toBeLessThan(1e-5);
      // The batched steps went out as two micro-batches per layer: more requests than one batch.
      const single = await remote(PLACEMENTS['2 workers']!);
      try {
        await script(single, 'single');
        const requests = async (e: EngineClient) =>
          (await e.dispatchStats())!.roundTrips.reduce(
            (n, rt) => n + rt.counts.reduce((a, b) => a + b, 0),
            0,
          );
        expect(await requests(engine)).toBeGreaterThan(await requests(single));
        // Every layer of both micro-batches was costed (the accounting costs a layer while the
        // other half's requests are out): the same token rows as one batch.
        const tokenLayers = async (e: EngineClient) =>
          summarizeDispatch((await e.dispatchStats())!).tokenLayers;
        expect(await tokenLayers(engine)).toBe(await tokenLayers(single));
        expect(await tokenLayers(engine)).toBeGreaterThan(0);
      } finally {
        await single.close();
      }
    } finally {
      await engine.close();
    }
  });
});

describe('network accounting', () => {
  it('charges every byte to a request and matches the native top-K baseline under native routing', async () => {
    const engine = await remote(PLACEMENTS['2 workers']!);
    try {
      const c = referenceCases()[0]!;
      const a = await engine.step([
        { seqId: 'a', tokens: c.ids.slice(0, 30) },
        { seqId: 'b', tokens: c.ids.slice(5, 35) },
      ]);
      const b = await engine.step([{ seqId: 'a', tokens: [c.ids[30]!] }]);
      const s = summarizeDispatch((await engine.dispatchStats(true))!);
      const perRequest = [...a.bytes, ...b.bytes].reduce((x, y) => x + y, 0);
      expect(perRequest).toBeCloseTo(s.bytes, 3);
      expect(s.tokenLayers).toBe((60 + 1) * 4);
      // Per layer, one message to each worker with work: the two prefills reach both workers; the
      // decode token's two experts may share one.
      expect(s.messages).toBeGreaterThanOrEqual(3 * 4);
      expect(s.messages).toBeLessThanOrEqual(4 * 4);
      // Native top-2 routing: what was sent is the baseline, exactly.
      expect(s.vsNative).toBe(1);
      expect(s.bytes).toBe(s.nativeBytesPerTokenLayer * s.tokenLayers);
      expect(s.pairs).toBe(2 * s.tokenLayers);
      // A token whose two experts share a worker was sent once: fewer hidden states than pairs.
      expect(s.tokensSent).toBeLessThan(s.pairs);
      expect(s.noDedupBytesPerTokenLayer).toBeGreaterThan(s.bytesPerTokenLayer);
      // fp32, hidden 256: each token costs at least 1 KiB out and 1 KiB back per worker it visits.
      expect(s.bytesPerTokenLayer).toBeGreaterThan((2048 * s.tokensSent) / s.tokenLayers);
      expect(s.bytesPerTokenLayer).toBeLessThan((2048 * s.tokensSent) / s.tokenLayers + 100);

      await engine.step([{ seqId: 'k1', tokens: c.ids.slice(0, 30), routing: 'topk:1' }]);
      const k1 = summarizeDispatch((await engine.dispatchStats(true))!);
      // One expert per token: nothing to dedup, and about half of native top-2's traffic.
      expect(k1.noDedupBytesPerTokenLayer).toBe(k1.bytesPerTokenLayer);
      expect(k1.pairs).toBe(30 * 4);
      expect(k1.nativePairs).toBe(2 * 30 * 4);
      expect(k1.vsNative).toBeLessThan(0.75);
      expect(k1.vsNative).toBeGreaterThan(0.45);
    } finally {
      await engine.close();
    }
  });

  it('reports null accounting for local experts', async () => {
    expect(await local.dispatchStats()).toBeNull();
    expect(local.info.placement).toEqual([]);
  });
});

describe('bf16 on the wire', () => {
  it('keeps valid.man perplexity (all 159 windows) within 0.2% of single-process', async () => {
    const ids = await readU16Ids(`${EVAL_DIR}/valid.man.u16`);
    const engine = await remote(PLACEMENTS['2 workers']!, 'bf16');
    try {
      const [ref, got] = [await evaluatePerplexity(local, ids), await evaluatePerplexity(engine, ids)];
      expect(got.windows).toBe(159);
      expect(Math.abs(got.perplexity / ref.perplexity - 1)).toBeLessThan(2e-3);
      const s = summarizeDispatch((await engine.dispatchStats())!);
      expect(s.wire).toBe('bf16');
      // Half the bytes of fp32 per hidden state: ~1 KiB per token visit (512 out + 512 back).
      expect(s.bytesPerTokenLayer).toBeLessThan((1024 * s.tokensSent) / s.tokenLayers + 20);
    } finally {
      await engine.close();
    }
  });
});

describe('start-up failures', () => {
  it('names the experts no worker holds', async () => {
    await expect(remote(['0-3', '4-5'])).rejects.toThrow(/experts 6-7 of 8 are held by no worker/);
  });

  it('is refused by a worker of another model, with a clear error on both sides', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kmoe-other-model-'));
    try {
      for (const f of await readdir(MODEL_DIR)) {
        if (f !== 'config.json') await symlink(path.join(MODEL_DIR, f), path.join(dir, f));
      }
      const config = JSON.parse(await readFile(path.join(MODEL_DIR, 'config.json'), 'utf8'));
      await writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...config, rms_norm_eps: 1.1e-5 }));
      const other = await startWorker('0-7', [], { modelDir: dir });
      try {
        const err = await EngineClient.start({
          modelDir: MODEL_DIR,
          settings,
          experts: { kind: 'remote', workers: [other.url], wireDtype: 'bf16' },
        }).then(
          () => undefined,
          (e: Error) => e,
        );
        expect(err?.name).toBe('HandshakeError');
        expect(err?.message).toMatch(
          `worker ${other.url}: refused this coordinator (model): model fingerprint`,
        );
        expect(other.stderr()).toMatch(
          /refused coordinator .*model fingerprint .* differs from this worker's/,
        );
      } finally {
        await other.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a worker that speaks another protocol version', async () => {
    const ckpt = await Checkpoint.open(MODEL_DIR);
    const fingerprint = ckpt.fingerprint();
    await ckpt.close();
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((r) => wss.once('listening', r));
    wss.on('connection', (ws: WebSocket) =>
      ws.once('message', (data) => {
        const hello = decodeMessage(frameBytes(data as Buffer), {
          maxFrameBytes: 4096,
          hidden: 256,
          numExperts: 8,
          numLayers: 4,
        });
        expect(hello.type).toBe('hello');
        ws.send(
          encodeWelcome({
            version: PROTOCOL_VERSION + 1,
            fingerprint,
            worker: 'future',
            experts: [0, 1, 2, 3, 4, 5, 6, 7],
            numLayers: 4,
            numExperts: 8,
            hidden: 256,
            wire: ['bf16'],
            maxFrameBytes: 1 << 20,
          }),
        );
      }),
    );
    const port = (wss.address() as { port: number }).port;
    try {
      await expect(
        RemoteExpertBackend.connect(
          { workers: [`ws://127.0.0.1:${port}`], wire: 'bf16' },
          { fingerprint, numLayers: 4, numExperts: 8, hidden: 256, nativeK: 2 },
        ),
      ).rejects.toThrow(
        `worker ws://127.0.0.1:${port}: speaks protocol version ${PROTOCOL_VERSION + 1}, this coordinator ${PROTOCOL_VERSION}`,
      );
      await expect(
        RemoteExpertBackend.connect(
          { workers: ['ws://127.0.0.1:1'], wire: 'bf16' },
          { fingerprint, numLayers: 4, numExperts: 8, hidden: 256, nativeK: 2 },
        ),
      ).rejects.toThrow(/worker ws:\/\/127\.0\.0\.1:1: cannot connect: .*ECONNREFUSED/);
    } finally {
      for (const c of wss.clients) c.terminate();
      await new Promise((r) => wss.close(r));
    }
  });
});

describe('a worker that stops answering or dies', () => {
  it('fails the step within the timeout naming the missing experts, and recovers when the worker answers again', async () => {
    const victim = await startWorker('4-7');
    // Long enough that a loaded machine (two test files at a time) detects the killed worker
    // below well before it; the frozen case is allowed a few seconds past it for the same reason.
    const timeoutMs = 4000;
    const engine = await EngineClient.start({
      modelDir: MODEL_DIR,
      settings,
      experts: { kind: 'remote', workers: [urlOf('0-3'), victim.url], wireDtype: 'bf16', timeoutMs },
    });
    const ids = referenceCases()[0]!.ids;
    try {
      await engine.step([{ seqId: 'warm', tokens: ids.slice(0, 8) }]);

      // Frozen sole holder: the request is delivered but never answered. After the timeout the
      // worker is declared stalled; no replica holds 4-7, so the step fails naming them.
      victim.child.kill('SIGSTOP');
      let t0 = performance.now();
      await expect(engine.step([{ seqId: 'frozen', tokens: ids.slice(0, 8) }])).rejects.toThrow(
        new RegExp(`experts [4-7][-,4-7]* have no live worker \\(failed: ${victim.url}\\)`),
      );
      expect(performance.now() - t0).toBeLessThan(timeoutMs + 3000);

      // Thawed: the coordinator reconnects by itself (backoff) and the worker serves again.
      victim.child.kill('SIGCONT');
      let ok = false;
      for (const deadline = Date.now() + 30_000; !ok && Date.now() < deadline; ) {
        ok = await engine.step([{ seqId: 'thawed', tokens: ids.slice(0, 8) }]).then(
          () => true,
          () => false,
        );
        if (!ok) await new Promise((r) => setTimeout(r, 200));
      }
      expect(ok).toBe(true);

      // Killed with a request in flight (frozen again so that it stays in flight): the dropped
      // connection fails it at once, before the timeout.
      victim.child.kill('SIGSTOP');
      const inflight = engine.step([{ seqId: 'killed', tokens: ids.slice(0, 8) }]);
      await new Promise((r) => setTimeout(r, 300));
      t0 = performance.now();
      victim.child.kill('SIGKILL');
      await expect(inflight).rejects.toThrow(/experts [4-7][-,4-7]* have no live worker/);
      expect(performance.now() - t0).toBeLessThan(timeoutMs);

      // The engine thread is alive: it answers, and names the lost worker for experts only it held.
      expect(await engine.release(['warm'])).toBe(1);
      await expect(engine.step([{ seqId: 'after', tokens: ids.slice(0, 32) }])).rejects.toThrow(
        new RegExp(`experts [4-7][-,4-7]* have no live worker \\(failed: ${victim.url}\\)`),
      );
    } finally {
      victim.child.kill('SIGCONT');
      await engine.close();
      await victim.stop();
    }
    // A coordinator on the surviving workers runs as before.
    const healthy = await remote(['0-3', '4-7']);
    try {
      const [a, b] = await Promise.all([
        healthy.step([{ seqId: 'x', tokens: ids.slice(0, 16) }]),
        local.step([{ seqId: 'x', tokens: ids.slice(0, 16) }]),
      ]);
      expect(relativeError(a.logits, b.logits)).toBeLessThan(1e-5);
      await local.release(['x']);
    } finally {
      await healthy.close();
    }
  });
});
