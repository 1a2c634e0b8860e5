// The forward pass against an independent implementation's logits (float64 reference, native top-2):
// full prefill, token-by-token decode through the KV cache, and ragged batches must all land within
// 1e-3 max-abs of the reference. fp32 accumulation over 4 layers gives ~1e-5 here, so 1e-3 has
// headroom and still catches any real error (a wrong rope, mask or routing moves logits by >1e-1).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SequenceKvCache } from '../../../coordinator/engine/kv-cache.js';
import { ModelRunner } from '../../../coordinator/engine/model-runner.js';
import { LocalExpertBackend } from '../../../coordinator/moe/local-expert-backend.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import { ExpertHost } from '../../../shared/onnx/expert-host.js';
import { resolveRouting } from '../../../shared/routing/profile.js';
import { MODEL_DIR, maxAbsDiff, referenceCases, referenceLogits } from '../../helpers/paths.js';

const TOLERANCE = 1e-3;
const settings = { device: 'cpu' as const, threads: 2, expertWeights: 'fp32' as const };
let ckpt: Checkpoint;
let runner: ModelRunner;
const native = () => resolveRouting('topk:2', { numLayers: 4, numExperts: 8, nativeK: 2 });

beforeAll(async () => {
  ckpt = await Checkpoint.open(MODEL_DIR);
  const c = ckpt.config;
  const host = await ExpertHost.create({
    dims: ckpt.family.graphDims(c),
    numLayers: c.numLayers,
    experts: [0, 1, 2, 3, 4, 5, 6, 7],
    graph: (l, e, format) => ckpt.family.expertGraph(ckpt, l, e, format),
    settings,
  });
  runner = await ModelRunner.load(ckpt, new LocalExpertBackend(host), settings);
});

afterAll(async () => {
  await runner?.close();
  await ckpt?.close();
});

const V = 4096;

describe.each(referenceCases())('reference case $name', (c) => {
  const ref = referenceLogits(c);

  it('prefill of all 64 positions matches the reference logits', async () => {
    const fwd = await runner.forward([{ tokens: c.ids, policy: native() }]);
    const logits = await runner.logits(fwd.hidden, c.ids.length);
    expect(logits.length).toBe(c.shape[0] * c.shape[1]);
    expect(maxAbsDiff(logits, ref)).toBeLessThan(TOLERANCE);
  });

  it('prefill of 17 then one token at a time through the KV cache matches', async () => {
    const cache = new SequenceKvCache(4, runner.dims.kvWidth, 4);
    let fwd = await runner.forward([{ tokens: c.ids.slice(0, 17), cache, policy: native() }]);
    let worst = maxAbsDiff(await runner.logits(fwd.hidden, 17), ref.subarray(0, 17 * V));
    for (let p = 17; p < c.ids.length; p++) {
      fwd = await runner.forward([{ tokens: [c.ids[p]!], cache, policy: native() }]);
      worst = Math.max(
        worst,
        maxAbsDiff(await runner.logits(fwd.hidden, 1), ref.subarray(p * V, (p + 1) * V)),
      );
    }
    expect(cache.length).toBe(c.ids.length);
    expect(worst).toBeLessThan(TOLERANCE);
  });

  it('a ragged batch (different cached lengths and new-token counts) matches per sequence', async () => {
    const a = new SequenceKvCache(4, runner.dims.kvWidth);
    const b = new SequenceKvCache(4, runner.dims.kvWidth);
    await runner.forward([
      { tokens: c.ids.slice(0, 40), cache: a, policy: native() },
      { tokens: c.ids.slice(0, 9), cache: b, policy: native() },
    ]);
    // a gets 5 new tokens, b one: b's row is padding after its first position.
    const fwd = await runner.forward([
      { tokens: c.ids.slice(40, 45), cache: a, policy: native() },
      { tokens: c.ids.slice(9, 10), cache: b, policy: native() },
    ]);
    const H = runner.dims.hidden;
    const rowsA = fwd.hidden.slice(0, 5 * H);
    const rowB = fwd.hidden.slice(fwd.seqLen * H, fwd.seqLen * H + H);
    expect(maxAbsDiff(await runner.logits(rowsA, 5), ref.subarray(40 * V, 45 * V))).toBeLessThan(TOLERANCE);
    expect(maxAbsDiff(await runner.logits(rowB, 1), ref.subarray(9 * V, 10 * V))).toBeLessThan(TOLERANCE);
    expect(a.length).toBe(45);
    expect(b.length).toBe(10);
    // Swapped order: the padded past buffers are reused across steps, so b's padding now holds what
    // was a's cache a step ago; it must weigh nothing.
    const swapped = await runner.forward([
      { tokens: c.ids.slice(10, 13), cache: b, policy: native() },
      { tokens: c.ids.slice(45, 46), cache: a, policy: native() },
    ]);
    const rowsB = swapped.hidden.slice(0, 3 * H);
    const rowA = swapped.hidden.slice(swapped.seqLen * H, swapped.seqLen * H + H);
    expect(maxAbsDiff(await runner.logits(rowsB, 3), ref.subarray(10 * V, 13 * V))).toBeLessThan(TOLERANCE);
    expect(maxAbsDiff(await runner.logits(rowA, 1), ref.subarray(45 * V, 46 * V))).toBeLessThan(TOLERANCE);
  });
});

describe('forward input checks', () => {
  it('rejects token ids outside the vocabulary', async () => {
    await expect(runner.forward([{ tokens: [4096], policy: native() }])).rejects.toThrow(
      /outside the vocabulary/,
    );
  });

  it('rejects an empty sequence', async () => {
    await expect(runner.forward([{ tokens: [], policy: native() }])).rejects.toThrow(
      /at least one new token/,
    );
  });
});
