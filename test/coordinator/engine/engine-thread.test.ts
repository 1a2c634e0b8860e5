// The engine thread end to end: greedy continuations equal the reference's (step by step and in
// the engine-side decode loop), errors raised inside the thread reach the caller with their name,
// and sequences are independent.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecodeStream } from '../../../coordinator/engine/decode-stream.js';
import type { DecodeRequest } from '../../../coordinator/engine/engine.js';
import { EngineClient } from '../../../coordinator/engine/engine-client.js';
import { argmax, GREEDY, Rng, sampleToken } from '../../../coordinator/sampling.js';
import { greedyCases, MODEL_DIR } from '../../helpers/paths.js';

let engine: EngineClient;

beforeAll(async () => {
  engine = await EngineClient.start({
    modelDir: MODEL_DIR,
    settings: { device: 'cpu', threads: 2, expertWeights: 'fp32' },
  });
});

afterAll(async () => {
  await engine?.close();
});

async function greedy(seqId: string, prompt: readonly number[], n: number): Promise<number[]> {
  const out: number[] = [];
  let step = await engine.step([{ seqId, tokens: [...prompt] }]);
  while (out.length < n) {
    const next = argmax(step.logits);
    out.push(next);
    step = await engine.step([{ seqId, tokens: [next] }]);
  }
  await engine.release([seqId]);
  return out;
}

describe('engine thread', () => {
  it('reports the model it loaded', () => {
    expect(engine.info).toMatchObject({
      modelType: 'mixtral',
      numLayers: 4,
      numExperts: 8,
      nativeK: 2,
      vocabSize: 4096,
      eosTokenIds: [2],
      defaultRouting: 'topk:2',
    });
    expect(engine.info.fingerprint).toMatch(/^[0-9a-f]{64}$/);
  });

  it.each(greedyCases())('greedy continuation of $name equals the reference', async (c) => {
    expect(await greedy(c.name, c.promptIds, c.greedyIds.length)).toEqual(c.greedyIds);
  });

  it('batched decode of all reference prompts together gives the same continuations', async () => {
    const cases = greedyCases();
    let step = await engine.step(cases.map((c) => ({ seqId: `b-${c.name}`, tokens: c.promptIds })));
    const outs: number[][] = cases.map(() => []);
    for (let i = 0; i < 32; i++) {
      const next = cases.map((_, b) => argmax(step.logits, b * 4096, 4096));
      for (const [b, t] of next.entries()) outs[b]!.push(t);
      step = await engine.step(cases.map((c, b) => ({ seqId: `b-${c.name}`, tokens: [next[b]!] })));
    }
    expect(outs).toEqual(cases.map((c) => c.greedyIds));
    expect(await engine.release(cases.map((c) => `b-${c.name}`))).toBe(cases.length);
  });

  it('counts expert activations per request: native top-2 runs 2 experts per token per layer', async () => {
    const step = await engine.step([{ seqId: 'count', tokens: [10, 11, 12] }]);
    expect(step.activations).toEqual([3 * 4 * 2]);
    await engine.release(['count']);
  });

  it('applies a per-request routing policy', async () => {
    const step = await engine.step([
      { seqId: 'k1', tokens: [10, 11, 12], routing: 'topk:1' },
      { seqId: 'k3', tokens: [10, 11], routing: 'topk:3' },
    ]);
    expect(step.activations).toEqual([3 * 4 * 1, 2 * 4 * 3]);
    await engine.release(['k1', 'k3']);
  });

  it('passes errors from the thread with their name and message', async () => {
    await expect(engine.step([{ seqId: 'bad', tokens: [1], routing: 'entropy:1,2' }])).rejects.toMatchObject({
      name: 'RoutingSpecError',
    });
    await expect(engine.step([{ seqId: 'bad2', tokens: [99999] }])).rejects.toThrow(/outside the vocabulary/);
    // The engine keeps working after an error.
    const ok = await engine.step([{ seqId: 'after', tokens: [5] }]);
    expect(ok.logits.length).toBe(4096);
  });
});

describe('engine step validation', () => {
  it('a rejected step leaves no sequence behind', async () => {
    await expect(engine.step([{ seqId: 'ghost', tokens: [1, 2], routing: 'nonsense:3' }])).rejects.toThrow();
    expect(await engine.release(['ghost'])).toBe(0);
  });

  it('rejects the same sequence twice in one step and an empty token list', async () => {
    await expect(
      engine.step([
        { seqId: 'twice', tokens: [1] },
        { seqId: 'twice', tokens: [2] },
      ]),
    ).rejects.toThrow(/appears twice/);
    await expect(engine.step([{ seqId: 'empty', tokens: [] }])).rejects.toThrow(/at least one token/);
  });

  it('refuses to grow a sequence beyond the model context', async () => {
    const tooLong = new Array(engine.info.maxPositions + 1).fill(5);
    await expect(engine.step([{ seqId: 'long', tokens: tooLong }])).rejects.toThrow(
      /positions; the model supports/,
    );
  });
});

describe('routing policy cache', () => {
  it('stays usable after more distinct routings than it keeps', async () => {
    for (let i = 0; i < 70; i++) {
      const step = await engine.step([
        { seqId: `p${i}`, tokens: [5, 6], routing: `skip:${(i / 200).toFixed(3)}` },
      ]);
      expect(step.logits.length).toBe(4096);
    }
    expect(await engine.release(Array.from({ length: 70 }, (_, i) => `p${i}`))).toBe(70);
    const again = await engine.step([{ seqId: 'again', tokens: [5, 6], routing: 'skip:0' }]);
    expect(again.activations).toEqual([2 * 4 * 2]);
  });
});

describe('decode loop on the engine thread', () => {
  const decode = (seqId: string, token: number, maxTokens: number, extra: Partial<DecodeRequest> = {}) =>
    engine.decode({
      seqId,
      token,
      maxTokens,
      sampling: GREEDY,
      rngState: new Rng(0).state(),
      stop: [],
      ...extra,
    });

  it.each(greedyCases())('greedy continuation of $name equals the reference, in chunks', async (c) => {
    const seqId = `loop-${c.name}`;
    const first = await engine.step([{ seqId, tokens: c.promptIds }]);
    const out = [argmax(first.logits)];
    while (out.length < c.greedyIds.length) {
      const d = await decode(seqId, out[out.length - 1]!, Math.min(5, c.greedyIds.length - out.length));
      expect(d.activations).toBe(d.tokens.length * 4 * 2);
      out.push(...d.tokens);
    }
    await engine.release([seqId]);
    expect(out).toEqual(c.greedyIds);
  });

  it('continues a seeded sampling stream exactly as sampling step by step on the caller', async () => {
    const sampling = { temperature: 1, topP: 0.9 };
    const prompt = greedyCases()[0]!.promptIds;
    const rng = new Rng(42);
    let step = await engine.step([{ seqId: 'seeded-a', tokens: prompt }]);
    const expected: number[] = [];
    for (let i = 0; i < 12; i++) {
      expected.push(sampleToken(step.logits, 0, 4096, sampling, rng));
      step = await engine.step([{ seqId: 'seeded-a', tokens: [expected[i]!] }]);
    }
    const rng2 = new Rng(42);
    const first = await engine.step([{ seqId: 'seeded-b', tokens: prompt }]);
    const got = [sampleToken(first.logits, 0, 4096, sampling, rng2)];
    let rngState = rng2.state();
    while (got.length < 12) {
      const d = await decode('seeded-b', got[got.length - 1]!, Math.min(4, 12 - got.length), {
        sampling,
        rngState,
      });
      rngState = d.rngState;
      got.push(...d.tokens);
    }
    await engine.release(['seeded-a', 'seeded-b']);
    expect(got).toEqual(expected);
    expect(new Set(got).size).toBeGreaterThan(1);
  });

  it('stops at a stop id (returned, not fed) and at the model context', async () => {
    const c = greedyCases()[0]!;
    const first = await engine.step([{ seqId: 'stop', tokens: c.promptIds }]);
    const stopId = c.greedyIds[3]!;
    const d = await decode('stop', argmax(first.logits), 20, { stop: [stopId] });
    const at = c.greedyIds.indexOf(stopId, 1);
    expect(d.tokens).toEqual(c.greedyIds.slice(1, at + 1));
    // Fed: the prompt, then every returned token but the stop id, and the token passed in.
    const next = await engine.step([{ seqId: 'stop', tokens: [stopId] }]);
    expect(argmax(next.logits)).toBe(c.greedyIds[at + 1]);
    await engine.release(['stop']);

    const max = engine.info.maxPositions;
    const long = Array.from({ length: max - 3 }, (_, i) => (i * 7) % 4096);
    const f = await engine.step([{ seqId: 'full', tokens: long }]);
    const full = await decode('full', argmax(f.logits), 10);
    expect(full.tokens).toHaveLength(3);
    await engine.release(['full']);
  });
});

describe('streamed decode (the server path for a sequence decoding alone)', () => {
  it('streams each token as it is sampled, the reference continuation, and stops when interrupted', async () => {
    const c = greedyCases()[0]!;
    const first = await engine.step([{ seqId: 'streamed', tokens: c.promptIds }]);
    const stream = DecodeStream.create(c.greedyIds.length - 1);
    const reports: number[] = [];
    const seen: number[] = [];
    const request = {
      seqId: 'streamed',
      token: argmax(first.logits),
      sampling: GREEDY,
      rngState: new Rng(0).state(),
      stop: [],
      stream: stream.buffer,
    };
    const whole = await engine.decodeEach({ ...request, maxTokens: c.greedyIds.length - 1 }, (n) => {
      reports.push(n);
      seen.push(stream.token(n - 1));
      expect(stream.activations(n - 1)).toBe(4 * 2);
    });
    expect(whole.failure).toBeUndefined();
    expect([argmax(first.logits), ...whole.tokens]).toEqual(c.greedyIds);
    expect(seen).toEqual(whole.tokens);
    expect(reports).toEqual(whole.tokens.map((_, i) => i + 1));
    await engine.release(['streamed']);

    // An interrupt raised when the third token arrives ends the call a step or so later.
    const again = await engine.step([{ seqId: 'interrupted', tokens: c.promptIds }]);
    const stop = DecodeStream.create(200);
    const cut = await engine.decodeEach(
      { ...request, seqId: 'interrupted', token: argmax(again.logits), maxTokens: 200, stream: stop.buffer },
      (n) => {
        if (n === 3) stop.interrupt();
      },
    );
    expect(cut.tokens.length).toBeGreaterThanOrEqual(3);
    expect(cut.tokens.length).toBeLessThan(200);
    await engine.release(['interrupted']);

    // Any other engine call (a health probe here) interrupts it too, instead of queueing behind it.
    await engine.step([{ seqId: 'probed', tokens: c.promptIds }]);
    const probed = engine.decodeEach(
      { ...request, seqId: 'probed', maxTokens: 200, stream: DecodeStream.create(200).buffer },
      () => {},
    );
    expect(await engine.sequences()).toBeGreaterThanOrEqual(1);
    const { tokens } = await probed;
    expect(tokens.length).toBeGreaterThanOrEqual(1);
    expect(tokens.length).toBeLessThan(200);
    await engine.release(['probed']);

    await expect(
      engine.decodeEach(
        { ...request, seqId: 'x', maxTokens: 5, stream: DecodeStream.create(4).buffer },
        () => {},
      ),
    ).rejects.toThrow('decode of 5 tokens into a stream of 4');
  });
});
