// Placement and dispatch planning, as pure functions: coverage errors name the missing experts,
// replicas are chosen deterministically by load, and a plan sends every pair exactly once, to the
// worker its expert was assigned, with each token at most once per worker.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { pairsOfExperts, planDispatch, shareSizes } from '../../../coordinator/cluster/dispatch-plan.js';
import { DispatchStats, summarizeDispatch } from '../../../coordinator/cluster/dispatch-stats.js';
import { PlacementError } from '../../../coordinator/cluster/errors.js';
import { PlacementTable } from '../../../coordinator/cluster/placement.js';
import type { ExpertAssignment } from '../../../shared/moe/expert-assignment.js';
import { DISPATCH_LATENCY_BUCKETS_SECONDS } from '../../../shared/protocol/messages.js';

const w = (url: string, experts: number[]) => ({ url, experts });

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

describe('PlacementTable', () => {
  it('names the experts no worker holds', () => {
    try {
      PlacementTable.create([w('ws://a', [0, 1, 2, 3]), w('ws://b', [6])], 8);
      throw new Error('expected a PlacementError');
    } catch (err) {
      expect(err).toBeInstanceOf(PlacementError);
      expect((err as PlacementError).missing).toEqual([4, 5, 7]);
      expect((err as Error).message).toBe(
        'experts 4-5,7 of 8 are held by no worker (ws://a holds 0-3; ws://b holds 6)',
      );
    }
  });

  it('lists at most 8 workers in a start-up error and a description, quoted, then counts the rest', () => {
    const many = Array.from({ length: 20_000 }, (_, i) => w(`ws://h${i}\u202e:1`, [0]));
    const listing = /^(ws:\/\/h\d\\u202e:1 holds 0; ){7}ws:\/\/h7\\u202e:1 holds 0; and 19,992 more$/;
    try {
      PlacementTable.create(many, 2);
      throw new Error('expected a PlacementError');
    } catch (err) {
      const m = /held by no worker \((.*)\)$/.exec((err as Error).message);
      expect(m?.[1]).toMatch(listing);
    }
    expect(PlacementTable.of(many, 2).describe()).toMatch(/^ws:\/\/h0\\u202e:1: 0; .*; and 19,992 more$/);
    expect(PlacementTable.of(many, 2).describe().length).toBeLessThan(400);
  });

  it('rejects a worker that claims an expert the model does not have', () => {
    expect(() => PlacementTable.create([w('ws://a', [0, 1, 8])], 8)).toThrow(
      /claims expert 8, but the model has 8/,
    );
  });

  it('sends single-holder experts to their holder and balances replicas by load', () => {
    const table = PlacementTable.create([w('ws://a', [0, 1, 2, 3, 4]), w('ws://b', [3, 4, 5, 6, 7])], 8);
    // Expert 0 (a only) has 3 pairs, expert 5 (b only) has 1. Replicated 3 (2 pairs) goes to the
    // lighter b (1 -> 3); then 4 (1 pair) ties at 3 vs 3 and goes to the lower index, a.
    const pairs = pairsOf([[0, 3], [0, 3], [0, 4], [5]]);
    const a = table.assign(pairs, [true, true]);
    expect(Array.from(a)).toEqual([0, -1, -1, 1, 0, 1, -1, -1]);
    // Same input, same choice.
    expect(Array.from(table.assign(pairs, [true, true]))).toEqual(Array.from(a));
    // With b failed, everything b shared with a goes to a; b's own expert 5 has nowhere to go.
    expect(() => table.assign(pairs, [true, false])).toThrow(
      /experts 5 have no live worker \(failed: ws:\/\/b\)/,
    );
    expect(Array.from(table.assign(pairsOf([[0, 3], [4]]), [true, false]))).toEqual([
      0, -1, -1, 0, 0, -1, -1, -1,
    ]);
  });
});

describe('the error of experts with no live worker', () => {
  const message = (table: PlacementTable, experts: number[], live: boolean[]) => {
    try {
      table.assign(pairsOf([experts]), live);
    } catch (err) {
      expect(err).toBeInstanceOf(PlacementError);
      return (err as Error).message;
    }
    throw new Error('assign did not fail');
  };

  it('names the failed holders of those experts only, not failed workers holding others', () => {
    const table = PlacementTable.of(
      [w('ws://a', [0]), w('ws://b', [1]), w('ws://c', [1]), w('ws://d', [2])],
      3,
    );
    expect(message(table, [1], [false, false, false, true])).toBe(
      'experts 1 have no live worker (failed: ws://b, ws://c)',
    );
  });

  it('leaves out workers that left the membership, and says so when only those held them', () => {
    const table = PlacementTable.of(
      [w('ws://a', [0]), { url: 'ws://b', experts: [1], left: true }, w('ws://c', [1])],
      2,
    );
    expect(message(table, [1], [true, false, false])).toBe('experts 1 have no live worker (failed: ws://c)');
    const gone = PlacementTable.of([w('ws://a', [0]), { url: 'ws://b', experts: [1], left: true }], 2);
    expect(message(gone, [1], [true, false])).toBe(
      'experts 1 have no live worker (the workers holding them left)',
    );
    const none = PlacementTable.of([w('ws://a', [0])], 2);
    expect(message(none, [1], [false])).toBe('experts 1 have no live worker (no worker holds them)');
  });

  it('names the first 3 failed holders, escaped and bounded, and counts the others', () => {
    const holders = Array.from({ length: 1000 }, (_, i) => w(`ws://h${i}/\u202e\n${'x'.repeat(1900)}`, [1]));
    const table = PlacementTable.of([w('ws://a', [0]), ...holders], 2);
    const text = message(
      table,
      [1],
      holders.map(() => false),
    );
    expect(text).toMatch(/^experts 1 have no live worker \(failed: ws:\/\/h0\/\\u202e\\nx+…, ws:\/\/h1\//);
    expect(text).toMatch(/ and 997 more\)$/);
    expect(/[\n\u202e]/.test(text)).toBe(false);
    expect(text.length).toBeLessThan(500);
  });
});

describe('planDispatch', () => {
  it('sends a token whose experts share a worker once, with all its pairs', () => {
    const table = PlacementTable.create([w('ws://a', [0, 1, 2, 3]), w('ws://b', [4, 5, 6, 7])], 8);
    const pairs = pairsOf([
      [1, 2],
      [1, 6],
      [7, 4],
    ]);
    const shares = planDispatch(pairs, pairsOfExperts(pairs, table.assign(pairs, [true, true])), 2);
    expect(shares.map((s) => s.worker)).toEqual([0, 1]);
    expect(Array.from(shares[0]!.tokens)).toEqual([0, 1]);
    expect(Array.from(shares[0]!.offsets)).toEqual([0, 2, 3]);
    expect(Array.from(shares[0]!.experts)).toEqual([1, 2, 1]);
    expect(Array.from(shares[1]!.tokens)).toEqual([1, 2]);
    expect(Array.from(shares[1]!.experts)).toEqual([6, 7, 4]);
    expect(Array.from(shares[1]!.weights)).toEqual(Array.from(pairs.weights.subarray(3)));
  });

  it('covers every pair exactly once, on its assigned worker, each token at most once per worker', () => {
    const arb = fc.record({
      tokens: fc.array(fc.uniqueArray(fc.nat(7), { minLength: 1, maxLength: 4 }), {
        minLength: 1,
        maxLength: 40,
      }),
      split: fc.constantFrom<number[][]>(
        [[0, 1, 2, 3, 4, 5, 6, 7]],
        [
          [0, 1, 2, 3],
          [4, 5, 6, 7],
        ],
        [
          [0, 1],
          [2, 3],
          [4, 5],
          [6, 7],
        ],
        [
          [0, 1, 2, 3, 4],
          [3, 4, 5, 6, 7],
        ],
      ),
    });
    fc.assert(
      fc.property(arb, ({ tokens, split }) => {
        const table = PlacementTable.create(
          split.map((es, i) => w(`ws://${i}`, es)),
          8,
        );
        const pairs = pairsOf(tokens);
        const assignment = table.assign(
          pairs,
          split.map(() => true),
        );
        const shares = planDispatch(pairs, pairsOfExperts(pairs, assignment), split.length);
        const sizes = shareSizes(pairs, pairsOfExperts(pairs, assignment), split.length);
        const seen: string[] = [];
        for (const s of shares) {
          expect(new Set(s.tokens).size).toBe(s.tokens.length);
          expect(sizes.tokens[s.worker]).toBe(s.tokens.length);
          expect(sizes.pairs[s.worker]).toBe(s.experts.length);
          s.tokens.forEach((t, r) => {
            for (let j = s.offsets[r]!; j < s.offsets[r + 1]!; j++) {
              expect(assignment[s.experts[j]!]).toBe(s.worker);
              expect(split[s.worker]).toContain(s.experts[j]);
              seen.push(`${t}:${s.experts[j]}:${s.weights[j]}`);
            }
          });
        }
        const all = tokens.flatMap((es, t) =>
          es.map((e, k) => `${t}:${e}:${pairs.weights[pairs.offsets[t]! + k]}`),
        );
        expect(seen.sort()).toEqual(all.sort());
      }),
    );
  });
});

describe('dispatch accounting', () => {
  it('reports bytes per token per layer and ratios against native and no-dedup', () => {
    const stats = new DispatchStats(
      {
        wire: 'bf16',
        nativeK: 2,
        hidden: 4,
        workers: [
          { url: 'ws://a', experts: '0-3' },
          { url: 'ws://b', experts: '4-7' },
        ],
      },
      2,
    );
    stats.recordMessage(0, 0, { bytesOut: 300, bytesIn: 100, pairs: 6, tokensSent: 4, seconds: 0.002 });
    stats.recordMessage(0, 1, { bytesOut: 200, bytesIn: 100, pairs: 2, tokensSent: 2, seconds: 0.004 });
    stats.recordMessage(1, 1, { bytesOut: 0, bytesIn: 0, pairs: 0, tokensSent: 0, seconds: 60 });
    stats.recordLayer(0, 5, {
      noDedup: { messages: 2, bytes: 1000, pairs: 8, tokensSent: 8 },
      native: { messages: 2, bytes: 1400, pairs: 10, tokensSent: 7 },
      nativeNoDedup: { messages: 2, bytes: 2000, pairs: 10, tokensSent: 10 },
    });
    stats.recordLayer(1, 5, {
      noDedup: { messages: 0, bytes: 0, pairs: 0, tokensSent: 0 },
      native: { messages: 0, bytes: 0, pairs: 0, tokensSent: 0 },
      nativeNoDedup: { messages: 0, bytes: 0, pairs: 0, tokensSent: 0 },
    });
    const s = summarizeDispatch(stats.toJSON());
    expect(s.tokenLayers).toBe(10);
    expect(s.bytes).toBe(700);
    expect(s.bytesPerTokenLayer).toBe(70);
    expect(s.nativeBytesPerTokenLayer).toBe(140);
    expect(s.noDedupBytesPerTokenLayer).toBe(100);
    expect(s.vsNative).toBe(0.5);
    expect(s.dedupSaving).toBeCloseTo(0.3, 12);
    expect(s.perWorker.map((x) => x.bytesOut)).toEqual([300, 200]);
    expect(s.perLayer[0]).toEqual({ tokens: 5, bytesPerToken: 140, nativeBytesPerToken: 280 });
    expect(s.perWorker[0]!.meanRoundTripMs).toBeCloseTo(2, 12);
    expect(s.perWorker[1]!.meanRoundTripMs).toBeCloseTo(30_002, 9);
    // Round trips land in the bin of the first bound at or above them; beyond the last, the extra bin.
    const rt = stats.toJSON().roundTrips;
    const bin = (seconds: number) => DISPATCH_LATENCY_BUCKETS_SECONDS.indexOf(seconds);
    expect(rt[0]!.counts[bin(0.0025)]).toBe(1);
    expect(rt[1]!.counts[bin(0.005)]).toBe(1);
    expect(rt[1]!.counts[DISPATCH_LATENCY_BUCKETS_SECONDS.length]).toBe(1);
    expect(rt.map((r) => r.counts.reduce((a, n) => a + n, 0))).toEqual([1, 2]);
  });
});
