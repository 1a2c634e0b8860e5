// A real `kmoe worker` against a hostile coordinator: a handshake whose client string tries to
// forge log lines is logged as one escaped line, and hidden states holding NaN or infinity are
// refused with a typed `bad-value` reply while the connection keeps serving.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../shared/model/checkpoint.js';
import { allocDispatchRequest, type DecodeLimits, encodeHello } from '../../shared/protocol/codec.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/messages.js';
import type { WireDType } from '../../shared/protocol/wire-dtype.js';
import { MODEL_DIR } from '../helpers/paths.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { startWorker, type WorkerProcess } from '../helpers/worker-process.js';

const H = 256;
const limits: DecodeLimits = { maxFrameBytes: 1 << 26, hidden: H, numExperts: 8, numLayers: 4 };

let worker: WorkerProcess;
let fingerprint: string;

beforeAll(async () => {
  const ckpt = await Checkpoint.open(MODEL_DIR);
  fingerprint = ckpt.fingerprint();
  await ckpt.close();
  worker = await startWorker('0-3');
});

afterAll(async () => {
  if (worker) expect(await worker.stop()).toBe(0);
});

/** A 2-token dispatch to expert 0 whose hidden state element `at` of token 1 is `poison` (bits). */
function dispatch(id: number, wire: WireDType, poison?: { at: number; bits: number }): Uint8Array {
  const f = allocDispatchRequest({
    id,
    layer: 0,
    wire,
    numTokens: 2,
    numPairs: 2,
    hidden: H,
    index: 'uint8',
  });
  if (wire === 'fp32') (f.hidden as Float32Array).fill(0.5);
  else (f.hidden as Uint16Array).fill(wire === 'bf16' ? 0x3f00 : 0x3800);
  if (poison) {
    if (wire === 'fp32')
      new Uint32Array(f.hidden.buffer, f.hidden.byteOffset, 2 * H)[H + poison.at] = poison.bits;
    else (f.hidden as Uint16Array)[H + poison.at] = poison.bits;
  }
  f.offsets.set([0, 1, 2]);
  f.experts.set([0, 0]);
  f.weights.set([1, 1]);
  return f.bytes;
}

describe('worker hardening', () => {
  it('logs a hostile client string as one escaped line', async () => {
    const peer = await RawPeer.open(worker.url, limits);
    const client = 'evil\nkmoe worker: FORGED accepted coordinator\r\n\u2028x';
    peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint, client }));
    expect((await peer.next()).type).toBe('welcome');
    peer.close();
    // The log record travels through the worker's stderr pipe (pino JSON lines): wait for it.
    const records = (): Record<string, unknown>[] =>
      worker
        .stderr()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    for (let i = 0; i < 500 && !records().some((r) => r['msg'] === 'accepted coordinator'); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    // Every stderr line is one JSON record (JSON.parse above throws otherwise): nothing forged.
    const lines = worker.stderr().split('\n');
    expect(lines.some((l) => l.startsWith('kmoe worker: FORGED'))).toBe(false);
    const accepted = records().find((r) => r['msg'] === 'accepted coordinator');
    expect(accepted?.['client']).toBe('evil\\nkmoe worker: FORGED accepted coordinator\\r\\n\\u2028x');
  });

  it.each([
    ['fp32 NaN', 'fp32', 0x7fc00000],
    ['fp32 infinity', 'fp32', 0xff800000],
    ['bf16 NaN', 'bf16', 0x7fc1],
    ['bf16 -infinity', 'bf16', 0xff80],
    ['fp16 infinity', 'fp16', 0x7c00],
  ] as const)('refuses %s hidden states with bad-value and keeps serving', async (_, wire, bits) => {
    const peer = await RawPeer.open(worker.url, limits);
    peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint, client: 'test' }));
    expect((await peer.next()).type).toBe('welcome');
    peer.send(dispatch(7, wire, { at: 5, bits }));
    const reply = await peer.next();
    expect(reply).toMatchObject({ type: 'error', id: 7, code: 'bad-value' });
    expect((reply as { message: string }).message).toMatch(/token 1 .*non-finite.*element 5/);
    peer.send(dispatch(8, wire));
    expect(await peer.next()).toMatchObject({ type: 'result', id: 8, numTokens: 2 });
    peer.close();
  });
});
