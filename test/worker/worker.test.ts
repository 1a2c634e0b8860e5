// A real `kmoe worker` process on loopback: handshake, refusals, validation of every frame with an
// error reply that leaves the connection and the worker serving, ordering, partial sums equal to
// an in-process ExpertHost, only the held experts read from disk, CUDA refused loudly.

import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../shared/model/checkpoint.js';
import { ExpertHost } from '../../shared/onnx/expert-host.js';
import { allocDispatchRequest, type DecodeLimits, encodeHello } from '../../shared/protocol/codec.js';
import { type Message, PROTOCOL_VERSION } from '../../shared/protocol/messages.js';
import { fromWire, toWire, type WireDType } from '../../shared/protocol/wire-dtype.js';
import { runCli } from '../helpers/cli.js';
import { MODEL_DIR } from '../helpers/paths.js';
import { type Scrape, scrape } from '../helpers/prometheus.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { relativeError } from '../helpers/relative-error.js';
import { SCHED_BATCH, SCHED_NORMAL, threadPolicies } from '../helpers/thread-policies.js';
import { startWorker, type WorkerProcess } from '../helpers/worker-process.js';

const H = 256;
const limits: DecodeLimits = { maxFrameBytes: 1 << 26, hidden: H, numExperts: 8, numLayers: 4 };
// A 10 KiB frame limit: 10 tokens of fp32 hidden states (10 KiB + header) are over it, 4 are not.
const SMALL_FRAME_MB = 10 / 1024;

let worker: WorkerProcess;
let ckpt: Checkpoint;
let fingerprint: string;
let local: ExpertHost;

beforeAll(async () => {
  ckpt = await Checkpoint.open(MODEL_DIR);
  fingerprint = ckpt.fingerprint();
  worker = await startWorker('0-3', ['--max-frame-mb', String(SMALL_FRAME_MB)]);
  local = await ExpertHost.create({
    dims: ckpt.family.graphDims(ckpt.config),
    numLayers: 4,
    experts: [0, 1, 2, 3],
    graph: (l, e, format) => ckpt.family.expertGraph(ckpt, l, e, format),
    settings: { device: 'cpu', threads: 1, expertWeights: 'fp32' },
  });
});

afterAll(async () => {
  local?.release();
  await ckpt?.close();
  if (worker) expect(await worker.stop()).toBe(0);
});

async function greeted(url = worker.url): Promise<RawPeer> {
  const peer = await RawPeer.open(url, limits);
  peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint, client: 'test' }));
  const welcome = await peer.next();
  expect(welcome.type).toBe('welcome');
  return peer;
}

interface Job {
  id: number;
  layer: number;
  x: Float32Array;
  offsets: number[];
  experts: number[];
  weights: number[];
}

function job(id: number, tokens: number, pick: (t: number) => [number, number][], layer = 1): Job {
  const x = Float32Array.from({ length: tokens * H }, (_, i) => Math.sin(i * 0.37 + id));
  const offsets = [0];
  const experts: number[] = [];
  const weights: number[] = [];
  for (let t = 0; t < tokens; t++) {
    for (const [e, w] of pick(t)) {
      experts.push(e);
      weights.push(w);
    }
    offsets.push(experts.length);
  }
  return { id, layer, x, offsets, experts, weights };
}

function encodeJob(j: Job, wire: WireDType = 'fp32'): Uint8Array {
  const n = j.offsets.length - 1;
  const f = allocDispatchRequest({
    id: j.id,
    layer: j.layer,
    wire,
    numTokens: n,
    numPairs: j.experts.length,
    hidden: H,
    index: 'uint8',
  });
  toWire(j.x, wire, f.hidden);
  f.offsets.set(j.offsets);
  f.experts.set(j.experts);
  f.weights.set(j.weights);
  return f.bytes;
}

async function expected(j: Job, host: ExpertHost = local): Promise<Float32Array> {
  const n = j.offsets.length - 1;
  const { out } = await host.compute(
    j.layer,
    { dtype: 'float32', shape: [n, H], data: j.x },
    {
      numTokens: n,
      offsets: Int32Array.from(j.offsets),
      experts: Int32Array.from(j.experts),
      weights: Float32Array.from(j.weights),
    },
  );
  return out.data;
}

/** A labelled counter prom-client has not created yet reads as zero. */
function tryScrape(s: Scrape, series: string): number {
  try {
    return s(series);
  } catch {
    return 0;
  }
}

function expectError(m: Message, code: string, id: number | null, message: RegExp): void {
  expect(m.type).toBe('error');
  if (m.type !== 'error') return;
  expect(m.code).toBe(code);
  expect(m.id).toBe(id);
  expect(m.message).toMatch(message);
}

describe('kmoe worker', () => {
  it('welcomes a coordinator of its model and says what it holds and accepts', async () => {
    const peer = await RawPeer.open(worker.url, limits);
    peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint, client: 'test' }));
    expect(await peer.next()).toMatchObject({
      type: 'welcome',
      version: PROTOCOL_VERSION,
      fingerprint,
      experts: [0, 1, 2, 3],
      numLayers: 4,
      numExperts: 8,
      hidden: H,
      wire: ['fp32', 'fp16', 'bf16'],
      maxFrameBytes: Math.round(SMALL_FRAME_MB * 2 ** 20),
    });
    peer.close();
  });

  it('reads only the weights of its experts', () => {
    const names = ckpt.family.tensorNames;
    let held = 0;
    for (let l = 0; l < 4; l++) {
      for (let e = 0; e < 4; e++) {
        const n = names.expert(l, e);
        for (const t of [n.w1, n.w2, n.w3]) held += ckpt.info(t).byteLength;
      }
    }
    const m = /\(([\d.]+) MiB of the checkpoint read\)/.exec(worker.stderr());
    expect(m).not.toBeNull();
    // Expert tensors plus the two shard headers (~10 KiB); the dense weights would add ~5 MiB.
    expect(Number(m![1])).toBeCloseTo(held / 2 ** 20, 1);
  });

  it.each(['fp32', 'bf16'] as const)(
    'returns per-token partial sums equal to an in-process expert host (%s)',
    async (wire) => {
      const peer = await greeted();
      // Token 0 uses two experts of this worker: sent once, one partial sum back.
      const j = job(1, 4, (t) =>
        t === 0
          ? [
              [0, 0.6],
              [3, 0.4],
            ]
          : [[t % 4, 1]],
      );
      peer.send(encodeJob(j, wire));
      const reply = await peer.next();
      expect(reply).toMatchObject({ type: 'result', id: 1, wire, numTokens: 4 });
      if (reply.type !== 'result') return;
      // fp32: the same arithmetic in the same order (1e-6 leaves room for thread-count effects);
      // bf16: input and output each rounded to 8 significant bits, ~2 * 2^-8.
      expect(relativeError(fromWire(reply.partial, wire), await expected(j))).toBeLessThan(
        wire === 'fp32' ? 1e-6 : 1e-2,
      );
      peer.close();
    },
  );

  it('answers requests of one connection in order', async () => {
    const peer = await greeted();
    const jobs = [10, 11, 12].map((id) => job(id, 2, (t) => [[(id + t) % 4, 1]]));
    for (const j of jobs) peer.send(encodeJob(j));
    for (const j of jobs) {
      const r = await peer.next();
      expect(r).toMatchObject({ type: 'result', id: j.id });
      if (r.type === 'result')
        expect(relativeError(fromWire(r.partial, 'fp32'), await expected(j))).toBeLessThan(1e-6);
    }
    peer.close();
  });

  it('refuses another protocol version and closes the connection', async () => {
    const peer = await RawPeer.open(worker.url, limits);
    peer.send(encodeHello({ version: PROTOCOL_VERSION + 1, fingerprint, client: 'future' }));
    const m = await peer.next();
    expect(m).toMatchObject({ type: 'refuse', reason: 'version' });
    if (m.type === 'refuse')
      expect(m.message).toMatch(`protocol version ${PROTOCOL_VERSION + 1} does not match`);
    expect((await peer.closed).code).toBe(1008);
    expect(worker.stderr()).toMatch(/refused coordinator .* protocol version/);
  });

  it('refuses a coordinator running another model', async () => {
    const peer = await RawPeer.open(worker.url, limits);
    peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint: '0'.repeat(64), client: 'other' }));
    const m = await peer.next();
    expect(m).toMatchObject({ type: 'refuse', reason: 'model' });
    if (m.type === 'refuse') expect(m.message).toMatch(/model fingerprint 0{16}… differs from this worker's/);
    expect((await peer.closed).code).toBe(1008);
    expect(worker.stderr()).toMatch(/refused coordinator .* model fingerprint/);
  });

  it('refuses a first message that is not a hello', async () => {
    const peer = await RawPeer.open(worker.url, limits);
    peer.send(encodeJob(job(1, 1, () => [[0, 1]])));
    expect(await peer.next()).toMatchObject({ type: 'refuse', reason: 'bad-hello' });
    expect((await peer.closed).code).toBe(1008);
  });

  it('answers malformed frames with an error reply and keeps serving the connection', async () => {
    const peer = await greeted();
    peer.send(new TextEncoder().encode('definitely not a frame'));
    expectError(await peer.next(), 'bad-frame', null, /bad magic/);
    peer.send('a text frame');
    expectError(await peer.next(), 'bad-frame', null, /text frames are not part of the kmoe protocol/);

    const bad = encodeJob(job(20, 1, () => [[0, 1]]));
    // Corrupt the weight (last section, last 8 bytes: 4 of weight + 4 of padding) into a NaN.
    new DataView(bad.buffer).setFloat32(bad.byteLength - 8, Number.NaN, true);
    peer.send(bad);
    expectError(await peer.next(), 'bad-value', 20, /weight of pair 0 is NaN/);

    peer.send(encodeJob(job(21, 2, () => [[5, 1]])));
    expectError(await peer.next(), 'not-held', 21, /experts 5 are not held by this worker \(it holds 0-3\)/);

    const ok = job(22, 2, (t) => [[t, 1]]);
    peer.send(encodeJob(ok));
    expect(await peer.next()).toMatchObject({ type: 'result', id: 22, numTokens: 2 });
    peer.close();
  });

  it('computes on its socket thread with --compute inline: same sums, in order, same error replies', async () => {
    const inline = await startWorker('0-3', ['--compute', 'inline']);
    try {
      const peer = await greeted(inline.url);
      const jobs = [60, 61, 62].map((id) =>
        job(id, 3, (t) => [
          [(id + t) % 4, 0.7],
          [(id + t + 1) % 4, 0.3],
        ]),
      );
      for (const j of jobs) peer.send(encodeJob(j));
      peer.send(encodeJob(job(63, 1, () => [[6, 1]])));
      peer.send(new TextEncoder().encode('not a frame'));
      for (const j of jobs) {
        const r = await peer.next();
        expect(r).toMatchObject({ type: 'result', id: j.id, numTokens: 3 });
        // The same graphs and the same order of additions as the thread placement and the host here.
        if (r.type === 'result')
          expect(relativeError(fromWire(r.partial, 'fp32'), await expected(j))).toBeLessThan(1e-6);
      }
      expectError(await peer.next(), 'not-held', 63, /experts 6 are not held/);
      expectError(await peer.next(), 'bad-frame', null, /bad magic/);
      // Between batches the socket thread answers HTTP as before.
      const health = await fetch(`${inline.url.replace('ws://', 'http://')}/health`);
      expect(health.status).toBe(200);
      peer.close();
    } finally {
      expect(await inline.stop()).toBe(0);
    }
  });

  it.each(['inline', 'thread'] as const)(
    'answers every request sent before a SIGTERM, frames still arriving included (--compute %s)',
    async (placement) => {
      // A bound far above the work (the default 10 s is near it on a busy machine): this test is
      // about what the drain answers, not how long it may take.
      const w = await startWorker('0-3', ['--compute', placement, '--shutdown-timeout', '300']);
      const peer = await greeted(w.url);
      // Large frames back to back: an inline worker reads the socket only between computations, so
      // the later frames are still arriving when the drain starts.
      const n = 12_000;
      const ids = [70, 71, 72, 73, 74];
      for (const id of ids)
        peer.send(
          encodeJob(
            job(id, n, (t) => [
              [t % 4, 0.5],
              [(t + 1) % 4, 0.5],
            ]),
            'bf16',
          ),
        );
      const first = await peer.next(60_000);
      expect(first).toMatchObject({ type: 'result', id: 70, numTokens: n });
      const stopped = w.stop();
      const got: number[] = [70];
      let drained = false;
      for (;;) {
        // A closed connection ends the wait at once (messages already received come first).
        const m = await Promise.race([peer.next(60_000), peer.closed.then(() => undefined)]).catch(
          () => undefined,
        );
        if (m === undefined) break;
        if (m.type === 'drain') drained = true;
        else {
          expect(m.type).toBe('result');
          if (m.type === 'result') got.push(m.id);
        }
        if (got.length === ids.length && drained) break;
      }
      expect(drained).toBe(true);
      expect(got).toEqual(ids);
      expect(await stopped).toBe(0);
      expect(w.stderr()).not.toMatch(/closing anyway/);
    },
  );

  it('closes anyway once --shutdown-timeout has passed, saying so', async () => {
    const w = await startWorker('0-3', ['--shutdown-timeout', '0']);
    const peer = await greeted(w.url);
    const n = 12_000;
    for (const id of [80, 81, 82])
      peer.send(
        encodeJob(
          job(id, n, (t) => [
            [t % 4, 0.5],
            [(t + 1) % 4, 0.5],
          ]),
          'bf16',
        ),
      );
    expect(await peer.next(60_000)).toMatchObject({ type: 'result', id: 80 });
    expect(await w.stop()).toBe(0);
    expect(w.stderr()).toMatch(/requests still running after 0 ms \(--shutdown-timeout\): closing anyway/);
  });

  it('answers a dispatch to a dense layer with bad-value, naming the MoE layers', async () => {
    const dir = path.join(path.dirname(MODEL_DIR), 'tiny-deepseek-v3');
    const dsv3 = await Checkpoint.open(dir);
    const w = await startWorker('0-15', [], { modelDir: dir });
    try {
      const H3 = 64;
      const peer = await RawPeer.open(w.url, {
        maxFrameBytes: 1 << 26,
        hidden: H3,
        numExperts: 16,
        numLayers: 3,
      });
      peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint: dsv3.fingerprint(), client: 'test' }));
      expect((await peer.next()).type).toBe('welcome');
      const send = (id: number, layer: number) => {
        const f = allocDispatchRequest({
          id,
          layer,
          wire: 'fp32',
          numTokens: 1,
          numPairs: 1,
          hidden: H3,
          index: 'uint8',
        });
        f.hidden.fill(0.1);
        f.offsets.set([0, 1]);
        f.experts.set([3]);
        f.weights.set([1]);
        peer.send(f.bytes);
      };
      // first_k_dense_replace = 1: layer 0 is dense, layers 1-2 have experts.
      send(1, 0);
      expectError(
        await peer.next(),
        'bad-value',
        1,
        /layer 0 is a dense layer of this model: it has no experts \(MoE layers: 1-2\)/,
      );
      send(2, 1);
      expect(await peer.next()).toMatchObject({ type: 'result', id: 2, numTokens: 1 });
      peer.close();
    } finally {
      await dsv3.close();
      expect(await w.stop()).toBe(0);
    }
  });

  it('runs every thread under SCHED_BATCH with --sched batch, normal by default, and auto falls back with a warning', async () => {
    const batch = await startWorker('0-1', ['--sched', 'batch']);
    try {
      const policies = threadPolicies(batch.child.pid!);
      expect(policies.length).toBeGreaterThan(4);
      expect(new Set(policies)).toEqual(new Set([SCHED_BATCH]));
      expect(batch.stderr()).toContain('scheduling policy SCHED_BATCH');
    } finally {
      expect(await batch.stop()).toBe(0);
    }
    expect(new Set(threadPolicies(worker.child.pid!))).toEqual(new Set([SCHED_NORMAL]));
    // auto: batch where chrt can set it, else normal with a warning (here: no chrt on the PATH).
    // A PATH holding node and nothing else (node and chrt may share /usr/bin).
    const bin = mkdtempSync(path.join(tmpdir(), 'kmoe-nochrt-'));
    symlinkSync(process.execPath, path.join(bin, 'node'));
    const noChrt = { ...process.env, PATH: bin };
    const auto = await startWorker('0-1', ['--sched', 'auto'], { env: noChrt });
    try {
      expect(new Set(threadPolicies(auto.child.pid!))).toEqual(new Set([SCHED_NORMAL]));
      expect(auto.stderr()).toMatch(
        /scheduling policy left at normal \(--sched auto\): cannot set SCHED_BATCH: chrt \(util-linux\) is not on the PATH/,
      );
    } finally {
      expect(await auto.stop()).toBe(0);
    }
    const batchOnly = await runCli(['worker', '--model', MODEL_DIR, '--experts', '0-3', '--sched', 'batch'], {
      env: noChrt,
    });
    expect(batchOnly.code).toBe(1);
    expect(batchOnly.stderr).toMatch(/cannot set SCHED_BATCH: chrt \(util-linux\) is not on the PATH/);
    rmSync(bin, { recursive: true, force: true });
    const r = await runCli(['worker', '--model', MODEL_DIR, '--experts', '0-3', '--sched', 'fifo']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^kmoe worker: error: --sched must be one of normal, batch, auto, got 'fifo'$/m);
  });

  it('refuses --compute inline with --redis: a registered worker must heartbeat while it computes', async () => {
    const r = await runCli([
      'worker',
      '--model',
      MODEL_DIR,
      '--experts',
      '0-3',
      '--compute',
      'inline',
      '--redis',
      'redis://127.0.0.1:1',
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--compute inline cannot be used with --redis/);
  });

  it('answers a frame above its size limit with an error reply and keeps serving', async () => {
    const peer = await greeted();
    const big = encodeJob(job(30, 10, () => [[1, 1]]));
    expect(big.byteLength).toBeGreaterThan(SMALL_FRAME_MB * 2 ** 20);
    peer.send(big);
    expectError(await peer.next(), 'oversize', null, /exceeds the limit of 10240 bytes/);
    peer.send(encodeJob(job(31, 4, () => [[1, 1]])));
    expect(await peer.next()).toMatchObject({ type: 'result', id: 31 });
    peer.close();
  });

  it('counts requests, activations and bytes in its /metrics, and answers /health', async () => {
    const http = worker.url.replace(/^ws:/, 'http:');
    const scrapedBefore = await scrape(`${http}/metrics`);
    const peer = await greeted();
    const j = job(40, 3, (t) =>
      t === 0
        ? [
            [0, 0.5],
            [1, 0.5],
          ]
        : [[t + 1, 1]],
    ); // layer 1: expert 0 once, 1 once, 2 once, 3 once
    const frame = encodeJob(j);
    peer.send(frame);
    expect(await peer.next()).toMatchObject({ type: 'result', id: 40 });
    peer.send(encodeJob(job(41, 1, () => [[6, 1]])));
    expectError(await peer.next(), 'not-held', 41, /not held/);
    const scrapedAfter = await scrape(`${http}/metrics`);
    const delta = (series: string, missingIsZero = false) => {
      const b = missingIsZero ? tryScrape(scrapedBefore, series) : scrapedBefore(series);
      return scrapedAfter(series) - b;
    };
    expect(delta('kmoe_worker_requests_total{outcome="ok"}')).toBe(1);
    expect(delta('kmoe_worker_requests_total{outcome="not-held"}', true)).toBe(1);
    expect(delta('kmoe_worker_request_seconds_count')).toBe(1);
    expect(delta('kmoe_worker_tokens_total{layer="1"}')).toBe(3);
    for (const e of [0, 1, 2, 3])
      expect(delta(`kmoe_worker_expert_token_activations_total{layer="1",expert="${e}"}`)).toBe(1);
    expect(scrapedAfter('kmoe_worker_coordinators')).toBeGreaterThanOrEqual(1);
    // In: the hello and both requests; the reply sizes are the worker's to choose.
    expect(delta('kmoe_worker_bytes_total{direction="in"}')).toBeGreaterThan(frame.byteLength);
    expect(delta('kmoe_worker_bytes_total{direction="out"}')).toBeGreaterThan(3 * H * 4);
    peer.close();
    await peer.closed;
    // Every test's peer has closed: the gauge comes back to zero once the worker saw the closes.
    let connected = scrapedAfter('kmoe_worker_coordinators');
    for (const deadline = Date.now() + 10_000; connected > 0 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      connected = (await scrape(`${http}/metrics`))('kmoe_worker_coordinators');
    }
    expect(connected).toBe(0);

    const health = await fetch(`${http}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok', experts: '0-3' });
    const missing = await fetch(`${http}/v1/models`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toMatch(/GET \/metrics and GET \/health/);
    const post = await fetch(`${http}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('fails loudly when CUDA is requested on a host without it', async () => {
    const r = await runCli([
      'worker',
      '--model',
      MODEL_DIR,
      '--experts',
      '0',
      '--port',
      '0',
      '--device',
      'cuda',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/execution provider 'cuda' is not available/);
    expect(r.stdout).not.toMatch(/ready/);
  });

  it('computes with int8 expert weights when started with --expert-weights int8', async () => {
    const int8Worker = await startWorker('0-3', ['--expert-weights', 'int8']);
    const int8Local = await ExpertHost.create({
      dims: ckpt.family.graphDims(ckpt.config),
      numLayers: 4,
      experts: [0, 1, 2, 3],
      graph: (l, e, format) => ckpt.family.expertGraph(ckpt, l, e, format),
      settings: { device: 'cpu', threads: 1, expertWeights: 'int8' },
    });
    try {
      const peer = await greeted(int8Worker.url);
      const j = job(50, 4, (t) => [[t % 4, 1]]);
      peer.send(encodeJob(j));
      const reply = await peer.next();
      expect(reply).toMatchObject({ type: 'result', id: 50 });
      if (reply.type !== 'result') return;
      const got = fromWire(reply.partial, 'fp32');
      // Same int8 graphs in both places; and not the fp32 result.
      expect(relativeError(got, await expected(j, int8Local))).toBeLessThan(1e-6);
      expect(int8Worker.stderr()).toMatch(/loading experts 0-3 of 8 \(4 layers, int8 weights\)/);
      expect(relativeError(got, await expected(j))).toBeGreaterThan(1e-4);
      peer.close();
    } finally {
      int8Local.release();
      expect(await int8Worker.stop()).toBe(0);
    }
  });

  it('computes with int4 expert weights when started with --expert-weights int4', async () => {
    const int4Worker = await startWorker('0-3', ['--expert-weights', 'int4']);
    const int4Local = await ExpertHost.create({
      dims: ckpt.family.graphDims(ckpt.config),
      numLayers: 4,
      experts: [0, 1, 2, 3],
      graph: (l, e, format) => ckpt.family.expertGraph(ckpt, l, e, format),
      settings: { device: 'cpu', threads: 1, expertWeights: 'int4' },
    });
    try {
      const peer = await greeted(int4Worker.url);
      const j = job(51, 4, (t) => [[t % 4, 1]]);
      peer.send(encodeJob(j));
      const reply = await peer.next();
      expect(reply).toMatchObject({ type: 'result', id: 51 });
      if (reply.type !== 'result') return;
      const got = fromWire(reply.partial, 'fp32');
      // Same int4 graphs in both places; and not the fp32 result.
      expect(relativeError(got, await expected(j, int4Local))).toBeLessThan(1e-6);
      expect(int4Worker.stderr()).toMatch(/loading experts 0-3 of 8 \(4 layers, int4 weights\)/);
      expect(relativeError(got, await expected(j))).toBeGreaterThan(1e-4);
      peer.close();
    } finally {
      int4Local.release();
      expect(await int4Worker.stop()).toBe(0);
    }
  });

  it('refuses bf16 expert weights on the CPU provider, naming why, before it is ready', async () => {
    const r = await runCli([
      'worker',
      '--model',
      MODEL_DIR,
      '--experts',
      '0-1',
      '--port',
      '0',
      '--expert-weights',
      'bf16',
    ]);
    // Two flags that cannot go together: a usage error (exit 2), with the way out as its hint.
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/expert weights 'bf16' cannot run on --device cpu/);
    expect(r.stderr).toMatch(/no bf16 MatMul kernel/);
    expect(r.stderr).toMatch(/^hint: use --device cuda for bf16 weights/m);
    expect(r.stdout).not.toMatch(/ready/);
  });

  it('rejects experts the model does not have before loading anything', async () => {
    const r = await runCli(['worker', '--model', MODEL_DIR, '--experts', '6-9', '--port', '0']);
    // A bad flag value is a usage error: exit 2 and a pointer to --help.
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/expert 9 does not exist: the model has 8/);
  });
});
