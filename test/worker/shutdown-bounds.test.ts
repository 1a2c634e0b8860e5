// Hostile review of the SIGTERM shutdown bound (--shutdown-timeout + the 1 s close handshake):
// coordinators and HTTP clients that try to hold a worker's shutdown, and the parent-death path.

import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../shared/model/checkpoint.js';
import { allocDispatchRequest, type DecodeLimits, encodeHello } from '../../shared/protocol/codec.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/messages.js';
import { parseReadyLine } from '../../shared/protocol/ready-line.js';
import { KMOE_ARGV, MODEL_DIR, ROOT } from '../helpers/paths.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { startWorker, type WorkerProcess } from '../helpers/worker-process.js';

const H = 256;
const limits: DecodeLimits = { maxFrameBytes: 1 << 26, hidden: H, numExperts: 8, numLayers: 4 };

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

function dispatch(id: number, tokens: number, perToken = 1): Uint8Array {
  const f = allocDispatchRequest({
    id,
    layer: 0,
    wire: 'fp32',
    numTokens: tokens,
    numPairs: tokens * perToken,
    hidden: H,
    index: 'uint8',
  });
  (f.hidden as Float32Array).fill(0.5);
  for (let i = 0; i <= tokens; i++) f.offsets[i] = i * perToken;
  for (let i = 0; i < tokens * perToken; i++) f.experts[i] = i % perToken;
  f.weights.fill(1);
  return f.bytes;
}

async function fingerprint(): Promise<string> {
  const ckpt = await Checkpoint.open(MODEL_DIR);
  const fp = ckpt.fingerprint();
  await ckpt.close();
  return fp;
}

async function greeted(url: string, fp: string, client: string): Promise<RawPeer> {
  const peer = await RawPeer.open(url, limits);
  peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint: fp, client }));
  expect((await peer.next(30_000)).type).toBe('welcome');
  return peer;
}

/** A real worker with this --shutdown-timeout, killed after the test if it is still running. */
async function workerStoppingIn(seconds: number): Promise<WorkerProcess> {
  const worker = await startWorker('0-3', ['--shutdown-timeout', String(seconds)]);
  cleanup.push(() => worker.child.kill('SIGKILL'));
  return worker;
}

/** A plain TCP connection to the worker's port, destroyed after the test. */
async function tcpTo(worker: WorkerProcess): Promise<net.Socket> {
  const socket = net.connect(Number(new URL(worker.url).port), '127.0.0.1');
  socket.on('error', () => undefined);
  cleanup.push(() => socket.destroy());
  await new Promise<void>((r) => socket.once('connect', () => r()));
  return socket;
}

/** SIGTERM, then the exit code and how long the exit took (ms). */
async function timedStop(worker: WorkerProcess): Promise<{ code: number | null; ms: number }> {
  const t = performance.now();
  const code = await worker.stop();
  return { code, ms: performance.now() - t };
}

describe('SIGTERM shutdown bound', () => {
  it('expensive requests queued by a coordinator that ignores the drain are skipped, not computed', async () => {
    const fp = await fingerprint();
    const worker = await workerStoppingIn(1);
    const peers = [
      await greeted(worker.url, fp, 'expensive 1'),
      await greeted(worker.url, fp, 'expensive 2'),
    ];
    for (const p of peers) cleanup.push(() => p.ws.terminate());
    // One request timed first (8,192 tokens x 4 experts: about a second on an idle 2-core machine).
    const t = performance.now();
    peers[0]!.send(dispatch(1, 8192, 4));
    expect((await peers[0]!.next(120_000)).type).toBe('result');
    const oneMs = performance.now() - t;
    // 16 more queued for the compute, 8 per connection (a connection's most).
    for (const p of peers) for (let i = 2; i <= 9; i++) p.send(dispatch(i, 8192, 4));
    await new Promise((r) => setTimeout(r, 500));
    const { code, ms } = await timedStop(worker);
    expect(code).toBe(0);
    // The drain's 1 s, the close handshake's 1 s, the call in progress (and one more that may start
    // as the flag is set), with room for a loaded machine. Before, every queued request was computed
    // first: 9.4 s here where one request took 0.78 s (the bound below was 6.3 s).
    expect(ms).toBeLessThan(2_000 + 3 * oneMs + 2_000);
  }, 300_000);

  it('a coordinator that keeps sending small requests (reading answers) after the drain notice', async () => {
    const fp = await fingerprint();
    const worker = await workerStoppingIn(2);
    const peer = await greeted(worker.url, fp, 'spammer');
    cleanup.push(() => peer.ws.terminate());
    let id = 0;
    let stop = false;
    const spam = (async () => {
      while (!stop && peer.ws.readyState === peer.ws.OPEN) {
        peer.send(dispatch(++id, 16));
        await Promise.race([peer.next(30_000).catch(() => undefined), peer.closed]);
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    const { code, ms } = await timedStop(worker);
    stop = true;
    await spam;
    expect(code).toBe(0);
    expect(ms).toBeLessThan(2_000 + 1_000 + 3_000);
  }, 60_000);

  // Before: server.close() stops Node's headersTimeout checks, so these held the shutdown for good
  // (still running after 30 s with --shutdown-timeout 1); now cut CLOSE_HANDSHAKE_MS after the close.
  it('a bare TCP connection that sends nothing, open at SIGTERM', async () => {
    const worker = await workerStoppingIn(1);
    await tcpTo(worker);
    await new Promise((r) => setTimeout(r, 300));
    const { code, ms } = await timedStop(worker);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(1_000 + 1_000 + 3_000);
  }, 60_000);

  it('an HTTP client trickling a request head at SIGTERM', async () => {
    const worker = await workerStoppingIn(1);
    const socket = await tcpTo(worker);
    socket.write('GET /health HTTP/1.1\r\nHost: x\r\n');
    const trickle = setInterval(() => socket.write('X-A: b\r\n'), 200);
    cleanup.push(() => clearInterval(trickle));
    const { code, ms } = await timedStop(worker);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(1_000 + 1_000 + 3_000);
  }, 60_000);

  it('an HTTP client polling /health on a keep-alive connection through the shutdown', async () => {
    const worker = await workerStoppingIn(1);
    const socket = await tcpTo(worker);
    let answers = 0;
    socket.on('data', (d: Buffer) => {
      answers += d.toString('latin1').split('HTTP/1.1 200').length - 1;
    });
    const poll = setInterval(() => socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'), 50);
    cleanup.push(() => clearInterval(poll));
    await new Promise((r) => setTimeout(r, 300));
    const { code, ms } = await timedStop(worker);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(1_000 + 1_000 + 3_000);
    // It was answered before the shutdown (the connection was a real, served one).
    expect(answers).toBeGreaterThan(0);
  }, 60_000);

  it("a worker whose parent dies (IPC disconnect) exits promptly despite a coordinator's backlog", async () => {
    const fp = await fingerprint();
    const child: ChildProcess = spawn(
      process.execPath,
      [...KMOE_ARGV, 'worker', '--model', MODEL_DIR, '--experts', '0-3', '--port', '0', '--threads', '1'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] },
    );
    cleanup.push(() => child.kill('SIGKILL'));
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    const url = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const ready = parseReadyLine(line);
        if (ready) resolve(ready.url);
      });
      child.once('exit', () => reject(new Error(stderr)));
    });
    const peer = await greeted(url, fp, 'reads nothing');
    cleanup.push(() => peer.ws.terminate());
    for (let i = 1; i <= 24; i++) peer.send(dispatch(i, 1024));
    expect((await peer.next(30_000)).type).toBe('result');
    peer.ws.pause();
    await new Promise((r) => setTimeout(r, 1_500));
    const t = performance.now();
    child.disconnect();
    const code = await exited;
    const ms = performance.now() - t;
    expect(code).toBe(0);
    expect(ms).toBeLessThan(1_000 + 3_000);
  }, 90_000);

  it('an honest coordinator beside one that reads nothing gets every answer', async () => {
    const fp = await fingerprint();
    const worker = await workerStoppingIn(3);
    const hostile = await greeted(worker.url, fp, 'reads nothing');
    cleanup.push(() => hostile.ws.terminate());
    for (let i = 1; i <= 24; i++) hostile.send(dispatch(i, 1024));
    expect((await hostile.next(30_000)).type).toBe('result');
    hostile.ws.pause();
    const honest = await greeted(worker.url, fp, 'honest');
    cleanup.push(() => honest.ws.terminate());
    for (let i = 1; i <= 6; i++) honest.send(dispatch(i, 1024));
    const t = performance.now();
    const exited = worker.stop();
    let results = 0;
    let drain = false;
    for (;;) {
      const m = await Promise.race([honest.next(30_000), honest.closed.then(() => undefined)]);
      if (m === undefined) break;
      if (m.type === 'result') results++;
      if (m.type === 'drain') drain = true;
    }
    const code = await exited;
    const ms = performance.now() - t;
    expect(results).toBe(6);
    expect(drain).toBe(true);
    expect((await honest.closed).code).toBe(1001);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(3_000 + 1_000 + 3_000);
  }, 90_000);
});

describe('a coordinator that completes its handshake during the drain', () => {
  it('is told to drain after its welcome', async () => {
    const fp = await fingerprint();
    const worker = await workerStoppingIn(3);
    const peer = await RawPeer.open(worker.url, limits);
    cleanup.push(() => peer.ws.terminate());
    // Upgraded before the SIGTERM, greeted after the worker started draining.
    const exited = worker.stop();
    await new Promise((r) => setTimeout(r, 20));
    peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint: fp, client: 'late hello' }));
    const types: string[] = [];
    for (;;) {
      const m = await Promise.race([peer.next(10_000), peer.closed.then(() => undefined)]);
      if (m === undefined) break;
      types.push(m.type);
    }
    expect(await exited).toBe(0);
    expect(types).toEqual(['welcome', 'drain']);
  }, 60_000);
});
