// ExpertLoad, the seam observer of expert load: pairs per (layer, expert) counted exactly (K per
// token), and the recent rate halves every EXPERT_LOAD_HALF_LIFE_S of a controlled clock.

import { describe, expect, it } from 'vitest';
import { EXPERT_LOAD_HALF_LIFE_S, ExpertLoad } from '../../../coordinator/moe/observers/expert-load.js';

function decision(perToken: number[][]) {
  const offsets = [0];
  const experts: number[] = [];
  for (const es of perToken) {
    experts.push(...es);
    offsets.push(experts.length);
  }
  return { numTokens: perToken.length, offsets: Int32Array.from(offsets), experts: Int32Array.from(experts) };
}

describe('ExpertLoad', () => {
  it('counts pairs per (layer, expert) and decays the recent rate with its half-life', () => {
    let now = 100;
    const load = new ExpertLoad(2, 4, () => now);
    load.observe({ layer: 0, decision: decision([[0, 1], [1, 3], [1]]) });
    load.observe({ layer: 1, decision: decision([[2, 3]]) });
    const a = load.toJSON();
    expect(a.pairs).toEqual([
      [1, 3, 0, 1],
      [0, 0, 1, 1],
    ]);
    const tau = EXPERT_LOAD_HALF_LIFE_S / Math.LN2;
    expect(a.pairsPerSecond[0]![1]).toBeCloseTo(3 / tau, 12);
    expect(a.expertPairsPerSecond[3]).toBeCloseTo(2 / tau, 12);
    now += EXPERT_LOAD_HALF_LIFE_S;
    const b = load.toJSON();
    expect(b.pairs).toEqual(a.pairs);
    expect(b.pairsPerSecond[0]![1]).toBeCloseTo(1.5 / tau, 12);
    expect(b.expertPairsPerSecond[3]).toBeCloseTo(1 / tau, 12);
  });
});
