// Cutting a worker's share into requests that fit its frame limit: every piece fits, pieces are
// the longest that do, they cover the share's rows in order, and a row too large alone is named.

import { describe, expect, it } from 'vitest';
import { cutRows, planDispatch, sliceShare } from '../../../coordinator/cluster/dispatch-plan.js';

/** CSR offsets of rows with these pair counts. */
const offsetsOf = (pairs: readonly number[]) =>
  Int32Array.from([0, ...pairs.map((_, i) => pairs.slice(0, i + 1).reduce((a, b) => a + b, 0))]);

/** A frame of `perRow` bytes a row and `perPair` a pair plus a header: what `fits` sees. */
const budget =
  (limit: number, perRow: number, perPair: number, header = 10) =>
  (rows: number, pairs: number) =>
    header + rows * perRow + pairs * perPair <= limit;

describe('cutRows', () => {
  it('keeps a share that fits whole', () => {
    const cut = cutRows(offsetsOf([1, 2, 1]), budget(1000, 10, 1));
    expect(cut).toEqual({ cuts: Int32Array.from([0, 3]) });
  });

  it('cuts into the longest pieces that fit, in order, covering every row', () => {
    const pairs = [1, 2, 2, 1, 1, 2, 1, 2, 2, 2, 1];
    const offsets = offsetsOf(pairs);
    const fits = budget(60, 10, 3);
    const cut = cutRows(offsets, fits);
    if (!('cuts' in cut)) throw new Error('expected cuts');
    const cuts = [...cut.cuts];
    expect(cuts[0]).toBe(0);
    expect(cuts.at(-1)).toBe(pairs.length);
    for (let i = 0; i + 1 < cuts.length; i++) {
      const [from, to] = [cuts[i]!, cuts[i + 1]!];
      expect(to).toBeGreaterThan(from);
      expect(fits(to - from, offsets[to]! - offsets[from]!)).toBe(true);
      // The longest: one row more would not fit (unless the share ends there).
      if (to < pairs.length) expect(fits(to + 1 - from, offsets[to + 1]! - offsets[from]!)).toBe(false);
    }
    // Greedy by hand: 10 + 10r + 3p <= 60 -> rows [0,3) (3 rows, 5 pairs = 55), [3,6) (4 pairs = 52),
    // [6,9) (5 pairs = 55), [9,11) (3 pairs = 39).
    expect(cuts).toEqual([0, 3, 6, 9, 11]);
  });

  it('names the first row that does not fit alone', () => {
    expect(cutRows(offsetsOf([1, 1, 3, 1]), budget(40, 10, 8))).toEqual({ tooLarge: 2 });
  });

  it('has nothing to cut in a share of no rows', () => {
    expect(cutRows(Int32Array.from([0]), () => false)).toEqual({ cuts: Int32Array.from([0]) });
  });
});

describe('sliceShare', () => {
  it('gives rows [from, to) with their pairs and rebased offsets', () => {
    // 4 tokens, worker 1 holds experts 2 and 3: tokens 0, 1 and 3 reach it.
    const pairs = {
      numTokens: 4,
      offsets: Int32Array.from([0, 2, 4, 6, 8]),
      experts: Int32Array.from([2, 3, 0, 3, 0, 1, 2, 3]),
      weights: Float32Array.from([0.6, 0.4, 0.7, 0.3, 0.5, 0.5, 0.9, 0.1]),
    };
    const pairWorker = Int32Array.from([1, 1, 0, 1, 0, 0, 1, 1]);
    const share = planDispatch(pairs, pairWorker, 2).find((s) => s.worker === 1)!;
    expect([...share.tokens]).toEqual([0, 1, 3]);
    const piece = sliceShare(share, 1, 3);
    expect(piece.worker).toBe(1);
    expect([...piece.tokens]).toEqual([1, 3]);
    expect([...piece.offsets]).toEqual([0, 1, 3]);
    expect([...piece.experts]).toEqual([3, 2, 3]);
    expect([...piece.weights]).toEqual([0.30000001192092896, 0.8999999761581421, 0.10000000149011612]);
    // The share itself is untouched.
    expect([...share.offsets]).toEqual([0, 2, 3, 5]);
  });
});
