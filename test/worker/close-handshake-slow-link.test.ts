// Hostile review of the 1 s close handshake bound: an honest worker draining on SIGTERM behind a
// slow link (worker -> coordinator throttled to RATE bytes/s by a userland proxy, as `tc` would).
// Every request it received is answered before it closes (drain waits for that), but the answers
// can still be in its socket buffer when ws.close(1001) starts the close timer.

import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../shared/model/checkpoint.js';
import { allocDispatchRequest, type DecodeLimits, encodeHello } from '../../shared/protocol/codec.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/messages.js';
import { MODEL_DIR } from '../helpers/paths.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { startWorker, type WorkerProcess } from '../helpers/worker-process.js';

const H = 256;
const limits: DecodeLimits = { maxFrameBytes: 1 << 26, hidden: H, numExperts: 8, numLayers: 4 };
const TOKENS = 1024; // 1 MiB of fp32 reply per request

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

/** A proxy in front of `port` that forwards worker -> client at `rate` bytes/s (backpressure kept). */
async function slowProxy(port: number, rate: number): Promise<number> {
  const server = net.createServer((client) => {
    const up = net.connect(port, '127.0.0.1');
    client.on('error', () => up.destroy());
    up.on('error', () => client.destroy());
    client.pipe(up);
    up.on('data', (chunk: Buffer) => {
      up.pause();
      client.write(chunk);
      setTimeout(() => up.resume(), (chunk.byteLength / rate) * 1000);
    });
    up.on('end', () => client.end());
    up.on('close', () => client.destroy());
    client.on('close', () => up.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

function dispatch(id: number): Uint8Array {
  const f = allocDispatchRequest({
    id,
    layer: 0,
    wire: 'fp32',
    numTokens: TOKENS,
    numPairs: TOKENS,
    hidden: H,
    index: 'uint8',
  });
  (f.hidden as Float32Array).fill(0.5);
  for (let i = 0; i <= TOKENS; i++) f.offsets[i] = i;
  f.experts.fill(0);
  f.weights.fill(1);
  return f.bytes;
}

describe('a draining worker behind a slow link', () => {
  it.each([
    // 12 MiB of answers at 16 Mbit/s: all of them handed to the socket before the close.
    ['before its close frame', 2 * 1024 * 1024, 12],
    // 24 MiB at 64 Mbit/s: over the 16 MiB of unsent replies at which the worker stops reading, so
    // requests still wait unread in its socket when the drain looks for a quiet moment.
    ['and reads every request sent before the drain, past its reply backlog', 8 * 1024 * 1024, 24],
  ])(
    'answers every request %s',
    async (_, rate, requests) => {
      const ckpt = await Checkpoint.open(MODEL_DIR);
      const fingerprint = ckpt.fingerprint();
      await ckpt.close();
      const worker: WorkerProcess = await startWorker('0-3');
      cleanup.push(() => worker.child.kill('SIGKILL'));
      const port = await slowProxy(Number(new URL(worker.url).port), rate);
      const peer = await RawPeer.open(`ws://127.0.0.1:${port}`, limits);
      peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint, client: 'slow link' }));
      expect((await peer.next(30_000)).type).toBe('welcome');
      for (let i = 1; i <= requests; i++) peer.send(dispatch(i));
      // The first answer is here: the worker has the requests; now it is told to stop.
      expect((await peer.next(30_000)).type).toBe('result');
      let results = 1;
      const exited = worker.stop();
      for (;;) {
        const m = await Promise.race([peer.next(60_000), peer.closed.then(() => undefined)]);
        if (m === undefined) break;
        if (m.type === 'result') results++;
      }
      const { code } = await peer.closed;
      expect(await exited).toBe(0);
      // Before the close frame waited for the queued answers: 7 of 12, code 1006.
      expect(results).toBe(requests);
      expect(code).toBe(1001);
    },
    90_000,
  );

  it('a coordinator that reads none of its answers holds the shutdown for --shutdown-timeout at most', async () => {
    const ckpt = await Checkpoint.open(MODEL_DIR);
    const fingerprint = ckpt.fingerprint();
    await ckpt.close();
    const worker: WorkerProcess = await startWorker('0-3', ['--shutdown-timeout', '2']);
    cleanup.push(() => worker.child.kill('SIGKILL'));
    const peer = await RawPeer.open(worker.url, limits);
    peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint, client: 'reads nothing' }));
    expect((await peer.next(30_000)).type).toBe('welcome');
    // 16 MiB of answers: more than the loopback socket buffers take, the rest stays in the worker.
    for (let i = 1; i <= 16; i++) peer.send(dispatch(i));
    expect((await peer.next(30_000)).type).toBe('result');
    peer.ws.pause();
    await new Promise((r) => setTimeout(r, 1_000));
    const t0 = performance.now();
    expect(await worker.stop()).toBe(0);
    // 2 s of shutdown timeout and 1 s of close handshake, with room for a loaded machine.
    expect(performance.now() - t0).toBeLessThan(20_000);
    peer.ws.terminate();
  }, 90_000);
});
