// skip:TAU keeps native top-K weights and only removes small experts: the layer output becomes the
// native output minus the skipped terms.

import { describe, expect, it } from 'vitest';
import { encodeExpertMeans } from '../../../shared/routing/expert-means.js';
import { createRoutingPolicy } from '../../../shared/routing/registry.js';
import { parseRoutingSpec } from '../../../shared/routing/spec.js';
import { routerInput, TINY_MIXTRAL, tokenSlice } from './helpers.js';

const row = (...p: number[]) => Float32Array.from(p);

describe('skip policy', () => {
  it('drops the second expert when its native weight is under TAU and does not renormalise', () => {
    // p1 = 0.5, p2 = 0.2: native weights 0.5/0.7 and 0.2/0.7 = 0.2857.
    const probs = row(0.5, 0.2, 0.1, 0.1, 0.05, 0.05, 0, 0);
    const keep = createRoutingPolicy(parseRoutingSpec('skip:0.28'), TINY_MIXTRAL).route(
      routerInput(0, 8, probs),
    );
    const drop = createRoutingPolicy(parseRoutingSpec('skip:0.29'), TINY_MIXTRAL).route(
      routerInput(0, 8, probs),
    );
    expect(tokenSlice(keep, 0).experts).toEqual([0, 1]);
    expect(tokenSlice(keep, 0).weights).toEqual([Math.fround(0.5 / 0.7), Math.fround(0.2 / 0.7)]);
    expect(tokenSlice(drop, 0).experts).toEqual([0]);
    expect(tokenSlice(drop, 0).weights).toEqual([Math.fround(0.5 / 0.7)]);
  });

  it('with TAU 0 equals native top-K, weights included', () => {
    const probs = row(0.05, 0.3, 0.1, 0.25, 0.1, 0.1, 0.05, 0.05);
    const skip = createRoutingPolicy(parseRoutingSpec('skip:0'), TINY_MIXTRAL).route(
      routerInput(1, 8, probs),
    );
    const top2 = createRoutingPolicy(parseRoutingSpec('topk:2'), TINY_MIXTRAL).route(
      routerInput(1, 8, probs),
    );
    expect(Array.from(skip.experts)).toEqual(Array.from(top2.experts));
    expect(Array.from(skip.weights)).toEqual(Array.from(top2.weights));
  });

  it('uses per-layer thresholds from a profile config', () => {
    const policy = createRoutingPolicy({ kind: 'skip', tau: [0, 0.5, 0, 0] }, TINY_MIXTRAL, 'p');
    const probs = row(0.4, 0.35, 0.05, 0.05, 0.05, 0.05, 0.05, 0);
    expect(tokenSlice(policy.route(routerInput(0, 8, probs)), 0).experts).toEqual([0, 1]);
    expect(tokenSlice(policy.route(routerInput(1, 8, probs)), 0).experts).toEqual([0]);
    expect(policy.spec).toBe('p');
  });

  it('round-trips its spec and rejects TAU outside [0, 1]', () => {
    expect(createRoutingPolicy(parseRoutingSpec('skip:0.25'), TINY_MIXTRAL).spec).toBe('skip:0.25');
    expect(() => parseRoutingSpec('skip:1.5')).toThrow(/tau = 1.5 must be in \[0, 1\]/);
    expect(() => parseRoutingSpec('skip:x')).toThrow(/TAU/);
  });
});

describe('skip policy with expert means', () => {
  const H = 3;
  const means = new Float32Array(4 * 8 * H);
  // Expert 1 of layer 2 has mean output [1, 2, 3]; everything else is 0.
  means.set([1, 2, 3], (2 * 8 + 1) * H);
  const expertMeans = encodeExpertMeans({ layers: 4, experts: 8, hidden: H, data: means });

  it('adds native weight x mean output of each skipped expert as the prior, nothing for kept ones', () => {
    const policy = createRoutingPolicy({ kind: 'skip', tau: 0.3, expertMeans }, TINY_MIXTRAL, 'm');
    // Token 0 skips expert 1 (native weight 0.2 / 0.7); token 1 keeps it (0.35 / 0.75 > 0.3).
    const probs = Float32Array.from([
      0.5, 0.2, 0.1, 0.1, 0.05, 0.05, 0, 0, 0.4, 0.35, 0.05, 0.05, 0.05, 0.05, 0.05, 0,
    ]);
    const d = policy.route(routerInput(2, 8, probs));
    expect(tokenSlice(d, 0).experts).toEqual([0]);
    expect(tokenSlice(d, 1).experts).toEqual([0, 1]);
    const w = Math.fround(0.2) / (Math.fround(0.5) + Math.fround(0.2));
    expect(Array.from(d.prior!.subarray(0, H))).toEqual([1, 2, 3].map((m) => Math.fround(w * m)));
    expect(Array.from(d.prior!.subarray(H, 2 * H))).toEqual([0, 0, 0]);
  });

  it('rejects means that do not fit the model', () => {
    const wrong = encodeExpertMeans({ layers: 2, experts: 8, hidden: H, data: new Float32Array(2 * 8 * H) });
    expect(() => createRoutingPolicy({ kind: 'skip', tau: 0.3, expertMeans: wrong }, TINY_MIXTRAL)).toThrow(
      /expertMeans covers 2 layers x 8 experts; the model has 4 x 8/,
    );
  });
});
