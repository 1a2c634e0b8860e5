// Properties every routing policy must satisfy on arbitrary router softmaxes, and agreement with
// a naive sort-based reference router on the exact experts, K and weights.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RoutingInputError } from '../../../shared/routing/errors.js';
import { createRoutingPolicy } from '../../../shared/routing/registry.js';
import {
  configArb,
  decisionKs,
  modelArb,
  probsArb,
  referenceRoute,
  routerInput,
  TINY_MIXTRAL,
} from './helpers.js';

const caseArb = modelArb.chain((model) =>
  fc.record({
    model: fc.constant(model),
    config: configArb(model),
    layer: fc.integer({ min: 0, max: model.numLayers - 1 }),
    probs: probsArb(model.numExperts),
  }),
);

describe('every routing policy', () => {
  it('keeps 1..maxK experts per token, distinct, in descending probability order', () => {
    fc.assert(
      fc.property(caseArb, ({ model, config, layer, probs }) => {
        const policy = createRoutingPolicy(config, model);
        const input = routerInput(layer, model.numExperts, probs);
        const d = policy.route(input);
        expect(d.offsets.length).toBe(input.numTokens + 1);
        expect(d.offsets[0]).toBe(0);
        expect(d.experts.length).toBe(d.offsets[input.numTokens]);
        expect(d.weights.length).toBe(d.experts.length);
        for (let t = 0; t < input.numTokens; t++) {
          const from = d.offsets[t]!;
          const k = d.offsets[t + 1]! - from;
          expect(k).toBeGreaterThanOrEqual(1);
          expect(k).toBeLessThanOrEqual(policy.maxK);
          const experts = Array.from(d.experts.subarray(from, from + k));
          expect(new Set(experts).size).toBe(k);
          for (let i = 1; i < k; i++) {
            const prev = probs[t * model.numExperts + experts[i - 1]!]!;
            const cur = probs[t * model.numExperts + experts[i]!]!;
            expect(prev > cur || (prev === cur && experts[i - 1]! < experts[i]!)).toBe(true);
          }
          // No expert left out may be more probable than the last one kept.
          const last = probs[t * model.numExperts + experts[k - 1]!]!;
          for (let j = 0; j < model.numExperts; j++) {
            if (!experts.includes(j)) expect(probs[t * model.numExperts + j]!).toBeLessThanOrEqual(last);
          }
        }
      }),
    );
  });

  it('returns non-negative weights summing to 1 within 1e-6 (float32 rounding of K <= 64 terms); skip keeps native weights (sum <= 1)', () => {
    fc.assert(
      fc.property(caseArb, ({ model, config, layer, probs }) => {
        const d = createRoutingPolicy(config, model).route(routerInput(layer, model.numExperts, probs));
        for (let t = 0; t < d.numTokens; t++) {
          let sum = 0;
          for (let i = d.offsets[t]!; i < d.offsets[t + 1]!; i++) {
            expect(d.weights[i]!).toBeGreaterThanOrEqual(0);
            sum += d.weights[i]!;
          }
          if (config.kind === 'skip') expect(sum).toBeLessThanOrEqual(1 + 1e-6);
          else expect(Math.abs(sum - 1)).toBeLessThan(1e-6);
        }
      }),
    );
  });

  it('reports router entropy in [0, ln E] (1e-6 slack for float32 storage)', () => {
    fc.assert(
      fc.property(caseArb, ({ model, config, layer, probs }) => {
        const d = createRoutingPolicy(config, model).route(routerInput(layer, model.numExperts, probs));
        for (const h of d.entropy) {
          expect(h).toBeGreaterThanOrEqual(0);
          expect(h).toBeLessThanOrEqual(Math.log(model.numExperts) + 1e-6);
        }
      }),
    );
  });

  it('matches the naive reference router exactly (K, experts, float32 weights, entropy)', () => {
    fc.assert(
      fc.property(caseArb, ({ model, config, layer, probs }) => {
        const input = routerInput(layer, model.numExperts, probs);
        const d = createRoutingPolicy(config, model).route(input);
        const ref = referenceRoute(config, model, input);
        expect(decisionKs(d)).toEqual(ref.ks);
        expect(Array.from(d.experts)).toEqual(ref.experts);
        expect(Array.from(d.weights)).toEqual(ref.weights);
        expect(Array.from(d.entropy)).toEqual(ref.entropy);
      }),
      { numRuns: 300 },
    );
  });

  it('gives each token the same decision whether routed alone or in a batch', () => {
    fc.assert(
      fc.property(caseArb, ({ model, config, layer, probs }) => {
        const policy = createRoutingPolicy(config, model);
        const E = model.numExperts;
        const batch = policy.route(routerInput(layer, E, probs));
        for (let t = 0; t < batch.numTokens; t++) {
          const alone = policy.route(routerInput(layer, E, probs.slice(t * E, (t + 1) * E)));
          const from = batch.offsets[t]!;
          const to = batch.offsets[t + 1]!;
          expect(Array.from(alone.experts)).toEqual(Array.from(batch.experts.subarray(from, to)));
          expect(Array.from(alone.weights)).toEqual(Array.from(batch.weights.subarray(from, to)));
        }
      }),
      { numRuns: 50 },
    );
  });

  it('returns compact arrays whose buffers hold only the decision', () => {
    const policy = createRoutingPolicy({ kind: 'ratio', beta: 0.9 }, TINY_MIXTRAL);
    const row = [0.5, 0.3, 0.1, 0.04, 0.03, 0.02, 0.005, 0.005];
    const d = policy.route(routerInput(0, 8, Float32Array.from([...row, ...row])));
    expect(Array.from(d.offsets)).toEqual([0, 1, 2]);
    expect(d.experts.buffer.byteLength).toBe(2 * 4);
    expect(d.weights.buffer.byteLength).toBe(2 * 4);
  });

  it('routes an empty batch to an empty decision', () => {
    const d = createRoutingPolicy({ kind: 'topk', k: 2 }, TINY_MIXTRAL).route(
      routerInput(0, 8, new Float32Array(0)),
    );
    expect(d.numTokens).toBe(0);
    expect(Array.from(d.offsets)).toEqual([0]);
    expect(d.experts.length).toBe(0);
  });
});

describe('route() input validation', () => {
  const policy = createRoutingPolicy({ kind: 'topk', k: 2 }, TINY_MIXTRAL);
  const uniform = new Float32Array(16).fill(1 / 8);

  it('rejects a layer outside the model', () => {
    expect(() => policy.route({ layer: 4, numTokens: 2, numExperts: 8, probs: uniform })).toThrow(
      /layer 4 is outside 0..3/,
    );
  });

  it('rejects a different expert count than the policy was built for', () => {
    expect(() =>
      policy.route({ layer: 0, numTokens: 2, numExperts: 16, probs: new Float32Array(32) }),
    ).toThrow(RoutingInputError);
  });

  it('rejects probs whose length is not numTokens x numExperts', () => {
    expect(() => policy.route({ layer: 0, numTokens: 3, numExperts: 8, probs: uniform })).toThrow(
      /probs has 16 values, expected numTokens 3 x numExperts 8/,
    );
  });

  it('rejects logits passed instead of probabilities, naming layer and token', () => {
    const logits = Float32Array.from([...new Array(8).fill(1 / 8), 2.5, -1, 0.3, 0.1, 0, 0, 1, 1]);
    try {
      policy.route({ layer: 2, numTokens: 2, numExperts: 8, probs: logits });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(RoutingInputError);
      expect((error as RoutingInputError).layer).toBe(2);
      expect((error as RoutingInputError).token).toBe(1);
      expect((error as RoutingInputError).message).toMatch(/expert 1 is -1/);
    }
  });

  it('rejects NaN and rows that do not sum to 1', () => {
    const nan = new Float32Array(8).fill(1 / 8);
    nan[3] = Number.NaN;
    expect(() => policy.route({ layer: 0, numTokens: 1, numExperts: 8, probs: nan })).toThrow(/NaN/);
    const half = new Float32Array(8).fill(1 / 16);
    expect(() => policy.route({ layer: 0, numTokens: 1, numExperts: 8, probs: half })).toThrow(/sums to 0.5/);
  });
});
