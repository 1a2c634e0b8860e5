// A request whose own routing refuses its input mid-step (here: a profile whose linear substitutes
// pass every check but overflow on real hidden states) ends alone: Engine.stepEach fails it with
// reason 'routing' and the policy's message, and the other requests of the step get exactly the
// logits they get without it. Engine.step keeps failing the whole step with the policy's error.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineClient } from '../../../coordinator/engine/engine-client.js';
import { routingHandle } from '../../../coordinator/engine/routing-handle.js';
import { overflowingSubstituteProfile } from '../../helpers/overflowing-profile.js';
import { MODEL_DIR } from '../../helpers/paths.js';

const settings = { device: 'cpu' as const, threads: 1, expertWeights: 'fp32' as const };
const VOCAB = 4096;

const overflowing = JSON.stringify(overflowingSubstituteProfile());

let engine: EngineClient;
beforeAll(async () => {
  engine = await EngineClient.start({ modelDir: MODEL_DIR, settings });
});
afterAll(async () => {
  await engine.close();
});

describe('a routing that fails on its own input', () => {
  it('fails its request alone in stepEach; the others get the logits they get without it', async () => {
    const prompt = [1, 317, 348, 4027, 12, 99];
    const alone = await engine.stepEach([
      { seqId: 'a-alone', tokens: prompt },
      { seqId: 'b-alone', tokens: prompt, routing: 'topk:1' },
    ]);
    expect(alone.failed).toEqual([]);
    const mixed = await engine.stepEach([
      { seqId: 'a', tokens: prompt },
      { seqId: 'bad', tokens: prompt, routing: overflowing },
      { seqId: 'b', tokens: prompt, routing: 'topk:1' },
    ]);
    expect(mixed.failed).toHaveLength(1);
    expect(mixed.failed[0]).toMatchObject({ index: 1, reason: 'routing', missing: [], layer: 0 });
    expect(mixed.failed[0]!.message).toMatch(
      /MoE layer 0: .*the linear substitute of expert \d is not finite for this input/,
    );
    expect(Array.from(mixed.logits.subarray(0, VOCAB))).toEqual(Array.from(alone.logits.subarray(0, VOCAB)));
    expect(Array.from(mixed.logits.subarray(2 * VOCAB, 3 * VOCAB))).toEqual(
      Array.from(alone.logits.subarray(VOCAB, 2 * VOCAB)),
    );
    // The failed sequence left no cache behind; the others decode on.
    expect(await engine.sequences()).toBe(4); // a, b, a-alone, b-alone: not bad
    const next = await engine.stepEach([{ seqId: 'a', tokens: [5] }]);
    expect(next.failed).toEqual([]);
    await engine.release(['a', 'b', 'a-alone', 'b-alone']);
  });

  it('fails a request whose routing does not resolve alone in stepEach', async () => {
    const prompt = [1, 317, 348, 4027, 12, 99];
    const alone = await engine.stepEach([{ seqId: 'd-alone', tokens: prompt }]);
    // A handle sent without its text, to an engine that has never seen it.
    const unknown = routingHandle(
      JSON.stringify({ kmoeRoutingProfile: 3, policy: { kind: 'skip', tau: 0.1 } }),
    );
    const mixed = await engine.stepEach([
      { seqId: 'e', tokens: [4, 5], routing: unknown },
      { seqId: 'd', tokens: prompt },
    ]);
    expect(mixed.failed).toHaveLength(1);
    expect(mixed.failed[0]).toMatchObject({ index: 0, reason: 'routing', missing: [], layer: undefined });
    expect(mixed.failed[0]!.message).toMatch(
      /routing handle inline-profile@sha256:[0-9a-f]+ is not known to the engine/,
    );
    expect(Array.from(mixed.logits.subarray(VOCAB, 2 * VOCAB))).toEqual(
      Array.from(alone.logits.subarray(0, VOCAB)),
    );
    expect(mixed.logits.subarray(0, VOCAB).every((v) => v === 0)).toBe(true);
    // It left no sequence behind; step() still fails the whole step on it.
    expect(await engine.sequences()).toBe(2); // d, d-alone: not e
    await expect(engine.step([{ seqId: 'e', tokens: [4, 5], routing: unknown }])).rejects.toThrow(
      /is not known to the engine/,
    );
    await engine.release(['d', 'd-alone']);
  });

  it('fails the whole step in step() with the policy error', async () => {
    await expect(engine.step([{ seqId: 'c', tokens: [1, 2, 3], routing: overflowing }])).rejects.toThrow(
      /not finite for this input; the profile's expertSubstitutes values are too large/,
    );
  });
});
