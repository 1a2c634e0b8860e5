// The K-aware pair assignment as a pure function (property tests): every pair goes to a live
// holder of its expert; with one holder per expert it is the baseline exactly; on symmetric
// replicas the imbalance stays within DEDUP_BONUS + 1 pairs and it sends no more hidden states than
// the baseline's whole-expert rule; measured service times shift work to the faster worker; and the
// re-send helper (mergeShares) rebuilds exactly the pairs of failed shares.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  assignPairs,
  batchCosts,
  DEDUP_BONUS,
  equalCosts,
  imbalance,
} from '../../../coordinator/cluster/balance.js';
import { mergeShares, planDispatch, shareSizes } from '../../../coordinator/cluster/dispatch-plan.js';
import { PlacementError } from '../../../coordinator/cluster/errors.js';
import { PlacementTable } from '../../../coordinator/cluster/placement.js';
import type { ExpertAssignment } from '../../../shared/moe/expert-assignment.js';

const E = 8;

function pairsOf(perToken: readonly (readonly number[])[]): ExpertAssignment {
  const offsets = [0];
  const experts: number[] = [];
  for (const es of perToken) {
    experts.push(...es);
    offsets.push(experts.length);
  }
  return {
    numTokens: perToken.length,
    offsets: Int32Array.from(offsets),
    experts: Int32Array.from(experts),
    weights: Float32Array.from(experts, (_, i) => 1 / (i + 1)),
  };
}

/** Tokens with 1..4 distinct experts each (top-K rows). */
const tokensArb = fc.array(
  fc.uniqueArray(fc.integer({ min: 0, max: E - 1 }), { minLength: 1, maxLength: 4 }),
  {
    minLength: 1,
    maxLength: 64,
  },
);

const table = (split: readonly (readonly number[])[]) =>
  PlacementTable.of(
    split.map((experts, i) => ({ url: `ws://${i}`, experts })),
    E,
  );

describe('assignPairs (k-aware)', () => {
  it('assigns every pair to a live holder of its expert, or names the experts without one', () => {
    const arb = fc.record({
      tokens: tokensArb,
      split: fc.array(fc.uniqueArray(fc.integer({ min: 0, max: E - 1 }), { maxLength: E }), {
        minLength: 1,
        maxLength: 4,
      }),
      live: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
    });
    fc.assert(
      fc.property(arb, ({ tokens, split, live }) => {
        const t = table(split);
        const pairs = pairsOf(tokens);
        const alive = split.map((_, w) => live[w]!);
        const orphans = [...new Set(tokens.flat())]
          .filter((e) => !split.some((es, w) => alive[w] && es.includes(e)))
          .sort((a, b) => a - b);
        if (orphans.length > 0) {
          const err = (() => {
            try {
              assignPairs('k-aware', t, pairs, alive, equalCosts(split.length));
            } catch (e) {
              return e;
            }
            return undefined;
          })();
          expect(err).toBeInstanceOf(PlacementError);
          expect((err as PlacementError).missing).toEqual(orphans);
          return;
        }
        const out = assignPairs('k-aware', t, pairs, alive, equalCosts(split.length));
        pairs.experts.forEach((e, j) => {
          const w = out[j]!;
          expect(alive[w]).toBe(true);
          expect(split[w]).toContain(e);
        });
      }),
    );
  });

  it('equals the baseline when every expert has one holder (dedup is then fixed by placement)', () => {
    const arb = fc.record({ tokens: tokensArb, workers: fc.integer({ min: 1, max: 4 }) });
    fc.assert(
      fc.property(arb, ({ tokens, workers }) => {
        const split = Array.from({ length: workers }, (_, w) =>
          Array.from({ length: E }, (_, e) => e).filter((e) => e % workers === w),
        );
        const t = table(split);
        const pairs = pairsOf(tokens);
        const live = split.map(() => true);
        const costs = equalCosts(workers);
        const k = assignPairs('k-aware', t, pairs, live, costs);
        const b = assignPairs('baseline', t, pairs, live, costs);
        expect(Array.from(k)).toEqual(Array.from(b));
        const ks = shareSizes(pairs, k, workers);
        const bs = shareSizes(pairs, b, workers);
        expect(ks.tokens.reduce((a, n) => a + n, 0)).toBeLessThanOrEqual(
          bs.tokens.reduce((a, n) => a + n, 0),
        );
      }),
    );
  });

  it(`keeps symmetric replicas within ${DEDUP_BONUS + 1} pairs of each other and sends no more hidden states than the baseline`, () => {
    const arb = fc.record({ tokens: tokensArb, workers: fc.integer({ min: 2, max: 4 }) });
    fc.assert(
      fc.property(arb, ({ tokens, workers }) => {
        const all = Array.from({ length: E }, (_, e) => e);
        const t = table(Array.from({ length: workers }, () => all));
        const pairs = pairsOf(tokens);
        const live = Array.from({ length: workers }, () => true);
        const costs = equalCosts(workers);
        const k = assignPairs('k-aware', t, pairs, live, costs);
        const load = batchCosts(k, workers, costs);
        expect(Math.max(...load) - Math.min(...load)).toBeLessThanOrEqual(DEDUP_BONUS + 1);
        const b = assignPairs('baseline', t, pairs, live, costs);
        const sent = (a: Int32Array) => shareSizes(pairs, a, workers).tokens.reduce((x, n) => x + n, 0);
        expect(sent(k)).toBeLessThanOrEqual(sent(b));
      }),
    );
  });

  it('gives a slower worker fewer pairs and counts pairs in flight', () => {
    const all = Array.from({ length: E }, (_, e) => e);
    const t = table([all, all]);
    const pairs = pairsOf(Array.from({ length: 60 }, (_, i) => [i % E, (i + 3) % E]));
    const live = [true, true];
    const slow = assignPairs('k-aware', t, pairs, live, { perPair: [1, 3], inflight: [0, 0] });
    const [fast, slower] = batchCosts(slow, 2, { perPair: [1, 1], inflight: [0, 0] });
    expect(fast!).toBeGreaterThan(2 * slower!);
    const busy = assignPairs('k-aware', t, pairs, live, { perPair: [1, 1], inflight: [40, 0] });
    const [busyPairs, idlePairs] = batchCosts(busy, 2, equalCosts(2));
    expect(idlePairs! - busyPairs!).toBeGreaterThanOrEqual(40 - DEDUP_BONUS - 1);
    expect(imbalance([3, 1], [true, true])).toBeCloseTo(1.5, 12);
    expect(imbalance([3, 1, 99], [true, true, false])).toBeCloseTo(1.5, 12);
  });
});

describe('mergeShares', () => {
  it('rebuilds exactly the pairs of the given shares, per token', () => {
    fc.assert(
      fc.property(tokensArb, fc.integer({ min: 0, max: 15 }), (tokens, mask) => {
        const all = Array.from({ length: E }, (_, e) => e);
        const t = table([all, all, all, all]);
        const pairs = pairsOf(tokens);
        const assign = assignPairs('k-aware', t, pairs, [true, true, true, true], equalCosts(4));
        const shares = planDispatch(pairs, assign, 4);
        const failed = shares.filter((s) => (mask >> s.worker) & 1);
        const merged = mergeShares(pairs.numTokens, failed);
        const want = new Set<string>();
        pairs.experts.forEach((e, j) => {
          if ((mask >> assign[j]!) & 1) {
            const tok = pairs.offsets.findIndex(
              (o, i) => i < pairs.numTokens && j >= o && j < pairs.offsets[i + 1]!,
            );
            want.add(`${tok}:${e}:${pairs.weights[j]}`);
          }
        });
        const got = new Set<string>();
        for (let tok = 0; tok < merged.numTokens; tok++)
          for (let j = merged.offsets[tok]!; j < merged.offsets[tok + 1]!; j++)
            got.add(`${tok}:${merged.experts[j]}:${merged.weights[j]}`);
        expect(got).toEqual(want);
        expect(merged.offsets[merged.numTokens]).toBe(want.size);
      }),
    );
  });
});
