// A real `kmoe worker` serving one expert of a synthetic checkpoint: its output equals a direct
// computation of Mixtral's SwiGLU expert from the seeded weights, regenerated here, not read.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { presetConfig } from '../../../coordinator/scale/presets.js';
import { synthValues } from '../../../coordinator/scale/prng.js';
import { writeSyntheticCheckpoint } from '../../../coordinator/scale/synth.js';
import { bf16ToF32 } from '../../../shared/dtype.js';
import { modelFamily } from '../../../shared/families/registry.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import { allocDispatchRequest, encodeHello } from '../../../shared/protocol/codec.js';
import { PROTOCOL_VERSION } from '../../../shared/protocol/messages.js';
import { fromWire, toWire } from '../../../shared/protocol/wire-dtype.js';
import { RawPeer } from '../../helpers/raw-peer.js';
import { startWorker, type WorkerProcess } from '../../helpers/worker-process.js';

const H = 64;
const FFN = 96;
const E = 4;
const SEED = 11;

let dir: string;
let worker: WorkerProcess | undefined;
let fingerprint: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kmoe-synth-worker-'));
  await writeSyntheticCheckpoint({
    config: {
      ...presetConfig('mixtral-8x7b'),
      hidden_size: H,
      intermediate_size: FFN,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      num_local_experts: E,
      vocab_size: 512,
      max_position_embeddings: 256,
    },
    outDir: dir,
    seed: SEED,
  });
  const ckpt = await Checkpoint.open(dir);
  fingerprint = ckpt.fingerprint();
  await ckpt.close();
  worker = await startWorker('2', [], { modelDir: dir });
});

afterAll(async () => {
  if (worker) expect(await worker.stop()).toBe(0);
  await rm(dir, { recursive: true, force: true });
});

/** y = weight * W2 (silu(W1 x) * W3 x), in float64 from the bf16 values the checkpoint holds. */
function directExpert(layer: number, expert: number, x: Float32Array, weight: number): Float64Array {
  const n = modelFamily('mixtral').tensorNames.expert(layer, expert);
  const w1 = bf16ToF32(synthValues(SEED, n.w1, FFN * H)); // [FFN, H]
  const w2 = bf16ToF32(synthValues(SEED, n.w2, H * FFN)); // [H, FFN]
  const w3 = bf16ToF32(synthValues(SEED, n.w3, FFN * H)); // [FFN, H]
  const act = new Float64Array(FFN);
  for (let f = 0; f < FFN; f++) {
    let g = 0;
    let u = 0;
    for (let i = 0; i < H; i++) {
      g += w1[f * H + i]! * x[i]!;
      u += w3[f * H + i]! * x[i]!;
    }
    act[f] = (g / (1 + Math.exp(-g))) * u;
  }
  const y = new Float64Array(H);
  for (let o = 0; o < H; o++) {
    let s = 0;
    for (let f = 0; f < FFN; f++) s += w2[o * FFN + f]! * act[f]!;
    y[o] = weight * s;
  }
  return y;
}

describe('a worker on a synthetic checkpoint', () => {
  it('serves one expert with the output of a direct computation', async () => {
    const peer = await RawPeer.open(worker!.url, {
      maxFrameBytes: 1 << 20,
      hidden: H,
      numExperts: E,
      numLayers: 2,
    });
    peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint, client: 'test' }));
    expect((await peer.next()).type).toBe('welcome');

    const tokens = 3;
    const weights = [1, 0.25, 0.7];
    // Inputs of RMS-normalised size (~1 per element), as the MoE input is.
    const x = Float32Array.from({ length: tokens * H }, (_, i) => Math.sin(i * 0.37) * 1.3);
    const f = allocDispatchRequest({
      id: 1,
      layer: 1,
      wire: 'fp32',
      numTokens: tokens,
      numPairs: tokens,
      hidden: H,
      index: 'uint8',
    });
    toWire(x, 'fp32', f.hidden);
    f.offsets.set([0, 1, 2, 3]);
    f.experts.set([2, 2, 2]);
    f.weights.set(weights);
    peer.send(f.bytes);
    const reply = await peer.next();
    expect(reply).toMatchObject({ type: 'result', id: 1 });
    if (reply.type !== 'result') return;
    const got = fromWire(reply.partial, 'fp32');

    let diff = 0;
    let scale = 0;
    for (let t = 0; t < tokens; t++) {
      const want = directExpert(1, 2, x.subarray(t * H, (t + 1) * H), weights[t]!);
      for (let i = 0; i < H; i++) {
        diff = Math.max(diff, Math.abs(got[t * H + i]! - want[i]!));
        scale = Math.max(scale, Math.abs(want[i]!));
      }
    }
    // fp32 sums of 64 and 96 terms against float64: ~1e-7 relative; 1e-5 is the fp32 bound.
    expect(scale).toBeGreaterThan(0);
    expect(diff / scale).toBeLessThan(1e-5);
    peer.close();
  });
});
