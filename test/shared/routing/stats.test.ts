// Routing statistics: hand-checked counters and derived values, histogram binning, merge equals
// recording everything in one instance, and the JSON round-trip.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RoutingStatsError } from '../../../shared/routing/errors.js';
import type { RoutingDecision } from '../../../shared/routing/policy.js';
import { createRoutingPolicy } from '../../../shared/routing/registry.js';
import { RoutingStats, type RoutingStatsJSON } from '../../../shared/routing/stats.js';
import { configArb, probsArb, routerInput, TINY_MIXTRAL } from './helpers.js';

/** A decision built by hand: experts per token and their entropies (weights are irrelevant to stats). */
function decision(tokens: number[][], entropy: number[]): RoutingDecision {
  const offsets = new Int32Array(tokens.length + 1);
  tokens.forEach((experts, t) => {
    offsets[t + 1] = offsets[t]! + experts.length;
  });
  const experts = Int32Array.from(tokens.flat());
  return {
    numTokens: tokens.length,
    offsets,
    experts,
    weights: new Float32Array(experts.length),
    entropy: Float32Array.from(entropy),
  };
}

describe('RoutingStats', () => {
  const ln8 = Math.log(8);

  it('counts tokens, K, expert load and derives avgK and saving (hand-computed)', () => {
    const stats = new RoutingStats(TINY_MIXTRAL);
    stats.record(0, decision([[3], [3, 1], [0, 7], [5]], [0.1, 0.9, 1.2, 0.2]));
    stats.record(
      1,
      decision(
        [
          [2, 3],
          [2, 3],
        ],
        [1, 1],
      ),
    );
    expect(stats.tokens()).toBe(6);
    expect(stats.activations()).toBe(10);
    expect(stats.nativeActivations()).toBe(12);
    expect(stats.avgK()).toBeCloseTo(10 / 6, 12);
    expect(stats.saving()).toBeCloseTo(1 / 6, 12);
    expect(stats.avgKPerLayer()).toEqual([1.5, 2, 0, 0]);
    const meanEntropy = stats.meanEntropyPerLayer();
    expect(meanEntropy[0]).toBeCloseTo(0.6, 6); // float32 entropies, 1e-6 is their resolution
    expect(meanEntropy[1]).toBeCloseTo(1, 6);
    const json = stats.toJSON();
    expect(json.layers[0]!.kHistogram).toEqual([2, 2, 0, 0, 0, 0, 0, 0]);
    expect(json.layers[0]!.expertTokens).toEqual([1, 1, 0, 2, 0, 1, 0, 1]);
    expect(json.layers[1]!.kHistogram).toEqual([0, 2, 0, 0, 0, 0, 0, 0]);
    expect(json.layers[1]!.expertTokens).toEqual([0, 0, 2, 2, 0, 0, 0, 0]);
    expect(json.summary).toMatchObject({ tokens: 6, activations: 10, nativeActivations: 12 });
  });

  it('reports zeros, not NaN, before anything is recorded', () => {
    const stats = new RoutingStats(TINY_MIXTRAL);
    expect([stats.avgK(), stats.saving(), ...stats.avgKPerLayer(), ...stats.meanEntropyPerLayer()]).toEqual(
      new Array(10).fill(0),
    );
  });

  it('bins entropy in equal bins over [0, ln E], upper edge inclusive, overflow into the last bin', () => {
    const stats = new RoutingStats({ ...TINY_MIXTRAL, entropyBins: 4 });
    const edges = stats.entropyBinUpperEdges();
    expect(edges).toEqual([ln8 / 4, ln8 / 2, (3 * ln8) / 4, ln8]);
    // 0 -> bin 0; just above edge 0 -> bin 1; ln 8 (as float32, a hair above) -> last; 5 -> last.
    const h = [0, Math.fround(edges[0]! * 1.0001), 1.2, Math.fround(ln8), 5];
    stats.record(2, decision([[0], [0], [0], [0], [0]], h));
    expect(stats.toJSON().layers[2]!.entropyHistogram).toEqual([1, 1, 1, 2]);
  });

  it('keeps histograms consistent with the token and activation counts', () => {
    fc.assert(
      fc.property(
        configArb(TINY_MIXTRAL),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), probsArb(8, 16)), { maxLength: 6 }),
        (config, batches) => {
          const policy = createRoutingPolicy(config, TINY_MIXTRAL);
          const stats = new RoutingStats(TINY_MIXTRAL);
          let tokens = 0;
          let activations = 0;
          for (const [layer, probs] of batches) {
            const d = policy.route(routerInput(layer, 8, probs));
            stats.record(layer, d);
            tokens += d.numTokens;
            activations += d.experts.length;
          }
          expect(stats.tokens()).toBe(tokens);
          expect(stats.activations()).toBe(activations);
          for (const layer of stats.toJSON().layers) {
            const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
            expect(sum(layer.kHistogram)).toBe(layer.tokens);
            expect(sum(layer.entropyHistogram)).toBe(layer.tokens);
            expect(sum(layer.expertTokens)).toBe(layer.sumK);
            expect(sum(layer.kHistogram.map((n, k) => n * (k + 1)))).toBe(layer.sumK);
          }
        },
      ),
      { numRuns: 50 },
    );
  });

  it('merge gives the same statistics as recording both streams into one instance', () => {
    const streamArb = fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), probsArb(8, 12)), { maxLength: 5 });
    fc.assert(
      fc.property(configArb(TINY_MIXTRAL), streamArb, streamArb, (config, a, b) => {
        const policy = createRoutingPolicy(config, TINY_MIXTRAL);
        const feed = (stats: RoutingStats, stream: typeof a) => {
          for (const [layer, probs] of stream)
            stats.record(layer, policy.route(routerInput(layer, 8, probs)));
          return stats;
        };
        const merged = feed(new RoutingStats(TINY_MIXTRAL), a).merge(feed(new RoutingStats(TINY_MIXTRAL), b));
        const both = feed(feed(new RoutingStats(TINY_MIXTRAL), a), b);
        const m = merged.toJSON();
        const o = both.toJSON();
        // Counters are integers and must agree exactly; entropy sums only to float64 reassociation.
        const withoutEntropySums = (json: RoutingStatsJSON) => ({
          ...json,
          layers: json.layers.map(({ entropySum: _, ...rest }) => rest),
          summary: { ...json.summary, meanEntropyPerLayer: [] },
        });
        expect(withoutEntropySums(m)).toEqual(withoutEntropySums(o));
        m.layers.forEach((layer, l) => {
          expect(layer.entropySum).toBeCloseTo(o.layers[l]!.entropySum, 9);
        });
      }),
      { numRuns: 50 },
    );
  });

  it('round-trips through JSON, including JSON.stringify', () => {
    const stats = new RoutingStats(TINY_MIXTRAL);
    stats.record(0, decision([[3], [3, 1]], [0.1, 0.9]));
    stats.record(3, decision([[6, 2, 1]], [1.7]));
    const json = JSON.parse(JSON.stringify(stats)) as unknown;
    expect(RoutingStats.fromJSON(json).toJSON()).toEqual(stats.toJSON());
  });

  it('rejects JSON whose counters disagree, and edges that are not the standard bins', () => {
    const stats = new RoutingStats(TINY_MIXTRAL);
    stats.record(0, decision([[3], [3, 1]], [0.1, 0.9]));
    const json = stats.toJSON();
    const tampered = { ...json, layers: json.layers.map((l, i) => (i === 0 ? { ...l, tokens: 3 } : l)) };
    expect(() => RoutingStats.fromJSON(tampered)).toThrow(/histograms count 2 \/ 2 tokens, tokens is 3/);
    const edges = { ...json, entropyBinUpperEdges: json.entropyBinUpperEdges.map((e) => e * 2) };
    expect(() => RoutingStats.fromJSON(edges)).toThrow(RoutingStatsError);
    expect(() => RoutingStats.fromJSON({ ...json, kmoeRoutingStats: 2 })).toThrow(
      /invalid routing stats JSON/,
    );
  });

  it('counts K = 0 tokens (the allocator) apart from the K histogram, and round-trips them', () => {
    const stats = new RoutingStats(TINY_MIXTRAL);
    stats.record(1, decision([[], [3], [2, 5], []], [0.1, 0.2, 0.3, 0.4]));
    const json = stats.toJSON();
    expect(json.layers[1]!.zeroK).toBe(2);
    expect(json.layers[1]!.kHistogram.slice(0, 2)).toEqual([1, 1]);
    expect(json.summary.avgK).toBe(3 / 4);
    expect(json.summary.saving).toBe(1 - 3 / 8);
    expect(RoutingStats.fromJSON(json).toJSON()).toEqual(json);
    const { zeroK: _dropped, ...old } = json.layers[0]!;
    expect(
      RoutingStats.fromJSON({ ...json, layers: [old, ...json.layers.slice(1)] }).toJSON().layers[1]!.zeroK,
    ).toBe(2);
  });

  it('rejects decisions and merges that do not fit', () => {
    const stats = new RoutingStats(TINY_MIXTRAL);
    expect(() => stats.record(4, decision([[0]], [0]))).toThrow(/layer 4 is outside 0..3/);
    expect(() => stats.record(0, decision([[0, 1, 2, 3, 4, 5, 6, 7, 0]], [0]))).toThrow(/K = 9 outside 0..8/);
    expect(() => stats.record(0, decision([[8]], [0]))).toThrow(/expert 8 outside 0..7/);
    expect(() => stats.merge(new RoutingStats({ ...TINY_MIXTRAL, numLayers: 2 }))).toThrow(
      /cannot merge routing stats: numLayers 4 vs 2/,
    );
    expect(() => new RoutingStats({ ...TINY_MIXTRAL, nativeK: 9 })).toThrow(RoutingStatsError);
  });
});
