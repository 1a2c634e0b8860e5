// Entropy-threshold policy: the reference's first-threshold-strictly-above rule, monotonicity in
// entropy, per-layer thresholds and construction errors.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RoutingConfigError } from '../../../shared/routing/errors.js';
import { EntropyPolicy } from '../../../shared/routing/policies/entropy.js';
import type { RoutingModel } from '../../../shared/routing/policy.js';
import {
  decisionKs,
  entropyOf,
  probsArb,
  routerInput,
  rowWithEntropy,
  TINY_MIXTRAL,
  tokenSlice,
} from './helpers.js';

const policy = (kValues: number[], thresholds: number[] | number[][], model: RoutingModel = TINY_MIXTRAL) =>
  new EntropyPolicy({ kind: 'entropy', kValues, thresholds }, model);

const kOf = (p: EntropyPolicy, row: Float32Array, layer = 0) =>
  decisionKs(p.route(routerInput(layer, row.length, row)))[0];

describe('entropy policy', () => {
  it('H = 0.3 with thresholds [0.6, 1.2] and k values [1, 2, 4] picks K = 1 (first threshold H is below)', () => {
    const row = rowWithEntropy(8, 0.3);
    expect(entropyOf(row)).toBeCloseTo(0.3, 5);
    const p = policy([1, 2, 4], [0.6, 1.2]);
    expect(kOf(p, row)).toBe(1);
    expect(kOf(p, rowWithEntropy(8, 0.9))).toBe(2);
    expect(kOf(p, rowWithEntropy(8, 1.5))).toBe(4);
  });

  it('compares strictly: H equal to a threshold falls to the next K', () => {
    const row = rowWithEntropy(8, 0.7);
    const h = entropyOf(row); // same float64 summation order as the policy, so bit-identical
    expect(kOf(policy([1, 2], [h]), row)).toBe(2);
    expect(kOf(policy([1, 2], [h * (1 + 2 ** -52)]), row)).toBe(1);
  });

  it('routes a hand-computed row: H = 1.2799 < 1.3 -> K = 2, experts [1, 3], weights [4/7, 3/7]', () => {
    const model = { numLayers: 1, numExperts: 4, nativeK: 2 };
    const d = policy([1, 2, 3], [0.5, 1.3], model).route(
      routerInput(0, 4, Float32Array.from([0.1, 0.4, 0.2, 0.3])),
    );
    expect(d.entropy[0]).toBeCloseTo(1.279854, 5);
    const { experts, weights } = tokenSlice(d, 0);
    expect(experts).toEqual([1, 3]);
    // float32 inputs: 0.4f / (0.4f + 0.3f) is 4/7 to ~1e-7.
    expect(weights[0]).toBeCloseTo(4 / 7, 6);
    expect(weights[1]).toBeCloseTo(3 / 7, 6);
  });

  it('K is non-decreasing along rows of increasing entropy', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.double({ min: 0.01, max: Math.log(8) - 0.01, noNaN: true }), {
          minLength: 2,
          maxLength: 12,
        }),
        fc.uniqueArray(fc.double({ min: 0.05, max: 2, noNaN: true }), { minLength: 2, maxLength: 2 }),
        (targets, ts) => {
          const thresholds = [...ts].sort((a, b) => a - b);
          const rows = [...targets].sort((a, b) => a - b).map((h) => rowWithEntropy(8, h));
          const probs = Float32Array.from(rows.flatMap((r) => Array.from(r)));
          const d = policy([1, 2, 4], thresholds).route(routerInput(0, 8, probs));
          const ks = decisionKs(d);
          for (let i = 1; i < ks.length; i++) {
            if (d.entropy[i]! > d.entropy[i - 1]!) expect(ks[i]!).toBeGreaterThanOrEqual(ks[i - 1]!);
          }
        },
      ),
    );
  });

  it('any two tokens: higher entropy never gets fewer experts', () => {
    fc.assert(
      fc.property(probsArb(8, 32), (probs) => {
        const d = policy([1, 2, 3, 6], [0.4, 0.9, 1.6]).route(routerInput(0, 8, probs));
        const ks = decisionKs(d);
        for (let a = 0; a < ks.length; a++) {
          for (let b = 0; b < ks.length; b++) {
            if (d.entropy[a]! < d.entropy[b]!) expect(ks[a]!).toBeLessThanOrEqual(ks[b]!);
          }
        }
      }),
    );
  });

  it('uses the thresholds of the routed layer', () => {
    const row = rowWithEntropy(8, 1.0);
    const p = policy([1, 2], [[0.5], [1.5], [0.9], [1.1]]);
    expect([0, 1, 2, 3].map((layer) => kOf(p, row, layer))).toEqual([2, 1, 2, 1]);
    expect(p.spec).toBe('entropy:per-layer');
    expect(p.maxK).toBe(2);
  });

  it('has the canonical spec and maxK = largest k value', () => {
    const p = policy([1, 2, 4], [0.6, 1.2]);
    expect(p.spec).toBe('entropy:1,2,4@0.6,1.2');
    expect(p.maxK).toBe(4);
  });

  describe('construction errors', () => {
    const problemsOf = (fn: () => unknown): readonly string[] => {
      try {
        fn();
      } catch (error) {
        expect(error).toBeInstanceOf(RoutingConfigError);
        return (error as RoutingConfigError).problems;
      }
      throw new Error('expected a RoutingConfigError');
    };

    it('rejects thresholds that are not strictly ascending', () => {
      expect(problemsOf(() => policy([1, 2, 4], [1.2, 0.6]))).toEqual([
        'thresholds must be strictly ascending: [1] = 0.6 after 1.2',
      ]);
      expect(problemsOf(() => policy([1, 2, 4], [0.6, 0.6]))[0]).toMatch(/strictly ascending/);
    });

    it('rejects a threshold count other than k values - 1', () => {
      expect(problemsOf(() => policy([1, 2, 4], [0.6]))).toEqual([
        'thresholds has 1 values but 3 k values need exactly 2',
      ]);
      expect(problemsOf(() => policy([1, 2], [0.6, 1.2]))[0]).toMatch(/need exactly 1/);
    });

    it('rejects k values above the expert count, unsorted, or fewer than two', () => {
      expect(problemsOf(() => policy([1, 9], [0.5]))).toEqual([
        "kValues[1] = 9 exceeds the model's 8 experts",
      ]);
      expect(problemsOf(() => policy([2, 1], [0.5]))[0]).toMatch(/kValues must be strictly ascending/);
      expect(problemsOf(() => policy([2], []))[0]).toMatch(/at least 2 k values/);
      expect(problemsOf(() => policy([0, 1], [0.5]))[0]).toMatch(/kValues\[0\] must be an integer >= 1/);
    });

    it('rejects non-positive thresholds and per-layer lists of the wrong length', () => {
      expect(problemsOf(() => policy([1, 2], [0]))[0]).toMatch(/must be > 0/);
      expect(problemsOf(() => policy([1, 2], [[0.5], [0.6]]))).toEqual([
        'thresholds has 2 per-layer entries but the model has 4 MoE layers',
      ]);
      expect(problemsOf(() => policy([1, 2], [[0.5], [0.6, 0.7], [0.5], [0.5]]))[0]).toMatch(
        /thresholds\[layer 1\] has 2 values/,
      );
    });
  });
});
