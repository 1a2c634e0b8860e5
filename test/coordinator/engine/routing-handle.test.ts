// Large inline profiles reach the engine as handles: the step that first uses a handle carries its
// text, later steps of the same sequence need only the handle (the engine keeps that sequence's
// policy even when its cache of policies has moved on), the logits are those of the text itself,
// and a handle the engine cannot know is refused by name.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineClient } from '../../../coordinator/engine/engine-client.js';
import { routingHandle } from '../../../coordinator/engine/routing-handle.js';
import { MODEL_DIR, ROOT } from '../../helpers/paths.js';

const settings = { device: 'cpu' as const, threads: 1, expertWeights: 'fp32' as const };
const VOCAB = 4096;
const text = JSON.stringify(
  JSON.parse(readFileSync(path.join(ROOT, 'profiles', 'recommended.json'), 'utf8')),
);
const handle = routingHandle(text);
const prompt = [1, 317, 348, 4027, 12, 99, 7, 1200];

let engine: EngineClient;
beforeAll(async () => {
  engine = await EngineClient.start({ modelDir: MODEL_DIR, settings });
});
afterAll(async () => {
  await engine.close();
});

describe('routing handles', () => {
  it('route a sequence by its first step text, then by the handle alone, as the text itself does', async () => {
    const byText = await engine.step([{ seqId: 'text', tokens: prompt, routing: text }]);
    const byHandle = await engine.step([{ seqId: 'h', tokens: prompt, routing: handle, routingText: text }]);
    expect(Array.from(byHandle.logits)).toEqual(Array.from(byText.logits));
    expect(byHandle.activations).toEqual(byText.activations);
    // The profile skips: fewer than 8 tokens x 4 layers x 2 activations.
    expect(byHandle.activations[0]).toBeLessThan(prompt.length * 8);
    for (const token of [5, 900, 31]) {
      const a = await engine.step([{ seqId: 'text', tokens: [token], routing: text }]);
      const b = await engine.step([{ seqId: 'h', tokens: [token], routing: handle }]);
      expect(Array.from(b.logits)).toEqual(Array.from(a.logits));
    }
    await engine.release(['text', 'h']);
  });

  it('refuse a text that is not the one the handle was made of, and ignore one sent for a known handle', async () => {
    const unseen = routingHandle(`${text} `);
    await expect(
      engine.step([{ seqId: 'forged', tokens: prompt, routing: unseen, routingText: 'topk:1' }]),
    ).rejects.toThrow(
      /routing handle inline-profile@sha256:[0-9a-f]{64} does not match the text sent with it/,
    );
    expect(await engine.sequences()).toBe(0);
    // Once the engine has resolved `handle` from its own text, a wrong text changes nothing.
    const byText = await engine.step([
      { seqId: 'right', tokens: prompt, routing: handle, routingText: text },
    ]);
    const forged = await engine.step([
      { seqId: 'forged', tokens: prompt, routing: handle, routingText: 'topk:1' },
    ]);
    expect(Array.from(forged.logits)).toEqual(Array.from(byText.logits));
    await engine.release(['right', 'forged']);
  });

  it("keep a live sequence's policy when the engine's cache of policies has moved on", async () => {
    await engine.step([{ seqId: 'kept', tokens: prompt, routing: handle, routingText: text }]);
    // More distinct routings than the cache holds (64) push the handle out of it.
    for (let i = 0; i < 70; i++) {
      await engine.step([{ seqId: `other-${i}`, tokens: [3], routing: `skip:${(i + 1) / 1000}` }]);
      await engine.release([`other-${i}`]);
    }
    const next = await engine.stepEach([{ seqId: 'kept', tokens: [5], routing: handle }]);
    expect(next.failed).toEqual([]);
    expect(next.logits.length).toBe(VOCAB);
    // A new sequence cannot start from the handle alone once the engine forgot it.
    await expect(engine.step([{ seqId: 'new', tokens: prompt, routing: handle }])).rejects.toThrow(
      /routing handle inline-profile@sha256:[0-9a-f]{64} is not known to the engine: the step that first uses it must carry its text/,
    );
    // Released, the sequence no longer holds it either.
    await engine.release(['kept']);
    await expect(engine.step([{ seqId: 'kept', tokens: [5], routing: handle }])).rejects.toThrow(
      /is not known to the engine/,
    );
    expect(await engine.sequences()).toBe(0);
  });
});
