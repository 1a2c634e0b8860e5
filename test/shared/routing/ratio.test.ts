// Ratio policy (Lu et al. 2024): the top expert always, each next one while p >= BETA * p_top,
// up to KMAX (default the model's native K).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RatioConfig } from '../../../shared/routing/policies/ratio.js';
import { RatioPolicy } from '../../../shared/routing/policies/ratio.js';
import { decisionKs, probsArb, routerInput, TINY_MIXTRAL, tokenSlice } from './helpers.js';

const model4 = { numLayers: 2, numExperts: 4, nativeK: 2 };
const kFor = (config: Omit<RatioConfig, 'kind'>, values: number[], layer = 0) =>
  decisionKs(
    new RatioPolicy({ kind: 'ratio', ...config }, model4).route(
      routerInput(layer, 4, Float32Array.from(values)),
    ),
  )[0];

describe('ratio policy', () => {
  it('keeps the second expert iff p2 >= beta * p1 (hand-computed, exact binary fractions)', () => {
    const row = [0.125, 0.5, 0.25, 0.125];
    expect(kFor({ beta: 0.5 }, row)).toBe(2); // 0.25 >= 0.25: equality keeps
    expect(kFor({ beta: 0.5000001 }, row)).toBe(1);
    expect(kFor({ beta: 0.3 }, [0.1, 0.4, 0.2, 0.3])).toBe(2);
    expect(kFor({ beta: 0.8 }, [0.1, 0.4, 0.2, 0.3])).toBe(1); // 0.3 < 0.32
    expect(kFor({ beta: 0 }, row)).toBe(2);
  });

  it('with KMAX > 2 compares every further expert against the top one', () => {
    const row = [0.125, 0.5, 0.25, 0.125];
    expect(kFor({ beta: 0.25, kMax: 4 }, row)).toBe(4);
    expect(kFor({ beta: 0.3, kMax: 4 }, row)).toBe(2);
    expect(kFor({ beta: 0.25, kMax: 3 }, row)).toBe(3);
  });

  it('renormalises the kept pair (hand-computed: 0.5, 0.25 -> 2/3, 1/3)', () => {
    const d = new RatioPolicy({ kind: 'ratio', beta: 0.5 }, model4).route(
      routerInput(0, 4, Float32Array.from([0.125, 0.5, 0.25, 0.125])),
    );
    expect(tokenSlice(d, 0)).toEqual({ experts: [1, 2], weights: [Math.fround(2 / 3), Math.fround(1 / 3)] });
  });

  it('uses the beta of the routed layer', () => {
    const row = [0.1, 0.4, 0.2, 0.3];
    expect([0, 1].map((layer) => kFor({ beta: [0.5, 0.8] }, row, layer))).toEqual([2, 1]);
  });

  it('native K = 2: K = 2 exactly when p2 >= beta * p1', () => {
    fc.assert(
      fc.property(probsArb(8), fc.double({ min: 0, max: 1, noNaN: true }), (probs, beta) => {
        const policy = new RatioPolicy({ kind: 'ratio', beta }, TINY_MIXTRAL);
        expect(policy.maxK).toBe(2);
        decisionKs(policy.route(routerInput(1, 8, probs))).forEach((k, t) => {
          const [p1, p2] = Array.from(probs.subarray(t * 8, t * 8 + 8)).sort((x, y) => y - x);
          expect(k).toBe(p2! >= beta * p1! ? 2 : 1);
        });
      }),
    );
  });

  it('rejects beta outside [0, 1], KMAX above E and per-layer lists of the wrong length', () => {
    const make = (config: Omit<RatioConfig, 'kind'>) => () =>
      new RatioPolicy({ kind: 'ratio', ...config }, TINY_MIXTRAL);
    expect(make({ beta: 1.5 })).toThrow(/beta = 1.5 must be in \[0, 1\]/);
    expect(make({ beta: -0.1 })).toThrow(/must be in \[0, 1\]/);
    expect(make({ beta: 0.3, kMax: 9 })).toThrow(/kMax = 9 exceeds/);
    expect(make({ beta: [0.3, 0.4, 0.5] })).toThrow(/beta has 3 per-layer entries but the model has 4/);
    expect(make({ beta: [0.3, 0.4, 2, 0.5] })).toThrow(/beta\[layer 2\] = 2 must be in \[0, 1\]/);
  });
});
