// Top-K policy: hand-computed decisions, tie-breaking by expert index, K = E keeping everything.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RoutingConfigError } from '../../../shared/routing/errors.js';
import { TopKPolicy } from '../../../shared/routing/policies/topk.js';
import { decisionKs, probsArb, routerInput, TINY_MIXTRAL, tokenSlice } from './helpers.js';

const model4 = { numLayers: 1, numExperts: 4, nativeK: 2 };
const route4 = (k: number, row: number[]) =>
  new TopKPolicy({ kind: 'topk', k }, model4).route(routerInput(0, 4, Float32Array.from(row)));

describe('topk policy', () => {
  it('keeps the K most probable experts and renormalises (hand-computed)', () => {
    const two = tokenSlice(route4(2, [0.1, 0.4, 0.2, 0.3]), 0);
    expect(two.experts).toEqual([1, 3]);
    expect(two.weights[0]).toBeCloseTo(4 / 7, 6);
    expect(two.weights[1]).toBeCloseTo(3 / 7, 6);
    expect(tokenSlice(route4(1, [0.1, 0.4, 0.2, 0.3]), 0)).toEqual({ experts: [1], weights: [1] });
    const three = tokenSlice(route4(3, [0.1, 0.4, 0.2, 0.3]), 0);
    expect(three.experts).toEqual([1, 3, 2]);
    expect(three.weights[2]).toBeCloseTo(2 / 9, 6);
  });

  it('breaks ties by the lower expert index', () => {
    expect(tokenSlice(route4(2, [0.25, 0.25, 0.25, 0.25]), 0).experts).toEqual([0, 1]);
    expect(tokenSlice(route4(3, [0.1, 0.3, 0.3, 0.3]), 0).experts).toEqual([1, 2, 3]);
    expect(tokenSlice(route4(2, [0.4, 0.1, 0.1, 0.4]), 0).experts).toEqual([0, 3]);
    expect(tokenSlice(route4(2, [0.1, 0.4, 0.1, 0.4]), 0)).toEqual({ experts: [1, 3], weights: [0.5, 0.5] });
  });

  it('with K = E keeps every expert with its own probability as weight (rows sum to 1 within 1e-6)', () => {
    fc.assert(
      fc.property(probsArb(8), (probs) => {
        const d = new TopKPolicy({ kind: 'topk', k: 8 }, TINY_MIXTRAL).route(routerInput(0, 8, probs));
        for (let t = 0; t < d.numTokens; t++) {
          const { experts, weights } = tokenSlice(d, t);
          expect([...experts].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
          experts.forEach((e, i) => {
            expect(Math.abs(weights[i]! - probs[t * 8 + e]!)).toBeLessThan(1e-6);
          });
        }
      }),
    );
  });

  it('uses exactly K experts for every token, any K in 1..E', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), probsArb(8), (k, probs) => {
        const policy = new TopKPolicy({ kind: 'topk', k }, TINY_MIXTRAL);
        expect(policy.maxK).toBe(k);
        expect(policy.spec).toBe(`topk:${k}`);
        expect(decisionKs(policy.route(routerInput(3, 8, probs))).every((x) => x === k)).toBe(true);
      }),
    );
  });

  it('rejects K above the expert count or below 1', () => {
    expect(() => new TopKPolicy({ kind: 'topk', k: 9 }, TINY_MIXTRAL)).toThrow(RoutingConfigError);
    expect(() => new TopKPolicy({ kind: 'topk', k: 9 }, TINY_MIXTRAL)).toThrow(
      /k = 9 exceeds the model's 8 experts/,
    );
    expect(() => new TopKPolicy({ kind: 'topk', k: 0 }, TINY_MIXTRAL)).toThrow(/integer >= 1/);
  });

  it('rejects an inconsistent model description', () => {
    expect(() => new TopKPolicy({ kind: 'topk', k: 1 }, { numLayers: 0, numExperts: 8, nativeK: 9 })).toThrow(
      /numLayers 0 is not >= 1; model nativeK 9 is not in 1..numExperts \(8\)/,
    );
  });
});
