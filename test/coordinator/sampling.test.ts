// The seeded generator behind `seed`: every bit of a seed in [0, 2^53) counts (it was cut to 32
// bits), seeds below 2^32 keep the streams they always gave, and out-of-range seeds are refused.

import { describe, expect, it } from 'vitest';
import { MAX_SEED, Rng, validateSampling } from '../../coordinator/sampling.js';

/** The first outputs as 32-bit integers. */
function first(seed: number, n = 3): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => Math.round(rng.next() * 2 ** 32));
}

describe('Rng', () => {
  it('keeps the streams of seeds below 2^32 (values of the 32-bit implementation)', () => {
    expect(first(0)).toEqual([3809008728, 1133695204, 53579671]);
    expect(first(42)).toEqual([2837322924, 544945897, 479756282]);
    expect(first(2 ** 32 - 1)).toEqual([835879718, 1921286648, 2356205009]);
  });

  it('gives seeds that differ only above bit 32 different streams', () => {
    const streams = [42, 42 + 2 ** 32, 42 + 2 ** 40, 42 + 2 ** 52, MAX_SEED].map((s) => first(s, 8).join());
    expect(new Set(streams).size).toBe(streams.length);
    // Still deterministic.
    expect(first(42 + 2 ** 40, 8)).toEqual(first(42 + 2 ** 40, 8));
  });

  it('refuses negative, fractional and unsafe seeds', () => {
    for (const seed of [-1, 1.5, 2 ** 53, Number.NaN]) {
      expect(() => new Rng(seed)).toThrow(/seed must be an integer in \[0, 2\^53\)/);
      expect(validateSampling({ temperature: 1, topP: 1, seed })).toMatch(
        /seed must be an integer in \[0, 2\^53\)/,
      );
    }
    expect(validateSampling({ temperature: 1, topP: 1, seed: MAX_SEED })).toBeUndefined();
  });
});
