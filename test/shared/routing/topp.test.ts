// Top-P policy (Huang et al. 2024): the smallest K in [KMIN, KMAX] whose top-K mass reaches P.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { TopPConfig } from '../../../shared/routing/policies/topp.js';
import { TopPPolicy } from '../../../shared/routing/policies/topp.js';
import { decisionKs, probsArb, routerInput, TINY_MIXTRAL, tokenSlice } from './helpers.js';

const model4 = { numLayers: 2, numExperts: 4, nativeK: 2 };
const row = Float32Array.from([0.1, 0.4, 0.2, 0.3]);
const kFor = (config: Omit<TopPConfig, 'kind'>, layer = 0) =>
  decisionKs(new TopPPolicy({ kind: 'topp', ...config }, model4).route(routerInput(layer, 4, row)))[0];

describe('topp policy', () => {
  it('picks the smallest K whose cumulative mass reaches P (hand-computed: 0.4, 0.7, 0.9, 1.0)', () => {
    expect(kFor({ p: 0.35 })).toBe(1);
    expect(kFor({ p: 0.65 })).toBe(2);
    expect(kFor({ p: 0.75 })).toBe(3);
    expect(kFor({ p: 0.95 })).toBe(4);
  });

  it('respects KMIN and KMAX', () => {
    expect(kFor({ p: 0.35, kMin: 2, kMax: 3 })).toBe(2);
    expect(kFor({ p: 0.95, kMin: 1, kMax: 2 })).toBe(2);
  });

  it('uses the P of the routed layer', () => {
    expect([0, 1].map((layer) => kFor({ p: [0.35, 0.75] }, layer))).toEqual([1, 3]);
  });

  it('renormalises the kept experts (hand-computed: topp:0.75 keeps 0.4, 0.3, 0.2)', () => {
    const d = new TopPPolicy({ kind: 'topp', p: 0.75 }, model4).route(routerInput(0, 4, row));
    const { experts, weights } = tokenSlice(d, 0);
    expect(experts).toEqual([1, 3, 2]);
    weights.forEach((w, i) => {
      expect(w).toBeCloseTo([4 / 9, 3 / 9, 2 / 9][i]!, 6);
    });
  });

  it('chosen K is minimal: mass(K) >= P unless K = KMAX, and mass(K - 1) < P unless K = KMIN', () => {
    fc.assert(
      fc.property(
        probsArb(8),
        fc.double({ min: 0.05, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 8 }),
        (probs, p, a, b) => {
          const kMin = Math.min(a, b);
          const kMax = Math.max(a, b);
          const d = new TopPPolicy({ kind: 'topp', p, kMin, kMax }, TINY_MIXTRAL).route(
            routerInput(0, 8, probs),
          );
          const ks = decisionKs(d);
          ks.forEach((k, t) => {
            const sorted = Array.from(probs.subarray(t * 8, t * 8 + 8)).sort((x, y) => y - x);
            const mass = (n: number) => sorted.slice(0, n).reduce((x, y) => x + y, 0);
            expect(k).toBeGreaterThanOrEqual(kMin);
            expect(k).toBeLessThanOrEqual(kMax);
            if (k < kMax) expect(mass(k)).toBeGreaterThanOrEqual(p);
            if (k > kMin) expect(mass(k - 1)).toBeLessThan(p);
          });
        },
      ),
    );
  });

  it('defaults to 1..E, so P = 1 may keep every expert', () => {
    const policy = new TopPPolicy({ kind: 'topp', p: 1 }, TINY_MIXTRAL);
    expect(policy.maxK).toBe(8);
    expect(policy.spec).toBe('topp:1');
  });

  it('rejects P outside (0, 1], a lone KMIN, KMIN > KMAX and KMAX > E', () => {
    const make = (config: Omit<TopPConfig, 'kind'>) => () =>
      new TopPPolicy({ kind: 'topp', ...config }, TINY_MIXTRAL);
    expect(make({ p: 0 })).toThrow(/p = 0 must be in \(0, 1\]/);
    expect(make({ p: 1.5 })).toThrow(/must be in \(0, 1\]/);
    expect(make({ p: 0.5, kMin: 2 })).toThrow(/kMin and kMax must be given together/);
    expect(make({ p: 0.5, kMin: 3, kMax: 2 })).toThrow(/kMin 3 exceeds kMax 2/);
    expect(make({ p: 0.5, kMin: 1, kMax: 9 })).toThrow(/kMax = 9 exceeds the model's 8 experts/);
    expect(make({ p: [0.5, 0.6] })).toThrow(/p has 2 per-layer entries but the model has 4 MoE layers/);
  });
});
