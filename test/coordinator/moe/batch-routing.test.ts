// routeBatch with different policies in one batch: each policy sees only its own rows (router
// scores and, for a prior made of linear substitutes, the experts' input rows), and the merged
// decision holds every row's experts, weights and prior where they belong.

import { describe, expect, it } from 'vitest';
import { routeBatch } from '../../../coordinator/moe/batch-routing.js';
import { RoutingFailedInBatchError } from '../../../coordinator/moe/errors.js';
import { encodeExpertSubstitutes } from '../../../shared/routing/expert-substitutes.js';
import { createRoutingPolicy } from '../../../shared/routing/registry.js';
import { parseRoutingSpec } from '../../../shared/routing/spec.js';
import { TINY_MIXTRAL } from '../../shared/routing/helpers.js';

function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

describe('routeBatch', () => {
  it('gives a substitute prior its own rows of x in a batch mixed with another policy', () => {
    const H = 4;
    const R = 2;
    const expertSubstitutes = encodeExpertSubstitutes({
      layers: 4,
      experts: 8,
      rank: R,
      hidden: H,
      down: values(4 * 8 * R * H, 1),
      up: values(4 * 8 * H * R, 2),
      bias: values(4 * 8 * H, 3),
    });
    const skip = createRoutingPolicy({ kind: 'skip', tau: 0.45, expertSubstitutes }, TINY_MIXTRAL, 's');
    const top2 = createRoutingPolicy(parseRoutingSpec('topk:2'), TINY_MIXTRAL);
    // Four tokens, all with a small second expert; rows 1 and 3 belong to the skip request.
    const row = [0.6, 0.2, 0.05, 0.05, 0.05, 0.05, 0, 0];
    const probs = Float32Array.from([...row, ...row, ...row, ...row]);
    const x = values(4 * H, 7);
    const spans = [
      { start: 0, end: 1, policy: top2 },
      { start: 1, end: 2, policy: skip },
      { start: 2, end: 3, policy: top2 },
      { start: 3, end: 4, policy: skip },
    ];
    const mixed = routeBatch(1, probs, 4, 8, spans, undefined, x);
    const alone = skip.route({
      layer: 1,
      numTokens: 2,
      numExperts: 8,
      probs: Float32Array.from([...row, ...row]),
      x: Float32Array.from([...x.subarray(H, 2 * H), ...x.subarray(3 * H, 4 * H)]),
    });
    expect(Array.from(mixed.offsets)).toEqual([0, 2, 3, 5, 6]);
    expect(Array.from(mixed.prior!.subarray(H, 2 * H))).toEqual(Array.from(alone.prior!.subarray(0, H)));
    expect(Array.from(mixed.prior!.subarray(3 * H, 4 * H))).toEqual(Array.from(alone.prior!.subarray(H)));
    expect(mixed.prior!.subarray(H, 2 * H).some((v) => v !== 0)).toBe(true);
    expect(Array.from(mixed.prior!.subarray(0, H))).toEqual([0, 0, 0, 0]);
    expect(Array.from(mixed.prior!.subarray(2 * H, 3 * H))).toEqual([0, 0, 0, 0]);
  });

  it("names the failing request's own token when its policy's rows span several requests", () => {
    const H = 4;
    // Expert 0's substitute overflows on every input; expert 5's is ordinary.
    const down = values(4 * 8 * H, 4);
    for (let l = 0; l < 4; l++) down.fill(3e38, l * 8 * H, (l * 8 + 1) * H);
    const expertSubstitutes = encodeExpertSubstitutes({
      layers: 4,
      experts: 8,
      rank: 1,
      hidden: H,
      down,
      up: values(4 * 8 * H, 5),
      bias: values(4 * 8 * H, 6),
    });
    const skip = createRoutingPolicy({ kind: 'skip', tau: 0.45, expertSubstitutes }, TINY_MIXTRAL, 's');
    const top2 = createRoutingPolicy(parseRoutingSpec('topk:2'), TINY_MIXTRAL);
    // Rank 1 expert 3; the skipped rank 2 is expert 5 (safe) or expert 0 (overflows).
    const row = (second: number) =>
      Array.from({ length: 8 }, (_, j) => (j === 3 ? 0.6 : j === second ? 0.2 : 0.2 / 6));
    const probs = Float32Array.from([...row(5), ...row(5), ...row(5), ...row(5), ...row(0), ...row(5)]);
    const spans = [
      { start: 0, end: 2, policy: skip }, // the skip policy's rows 0-1
      { start: 2, end: 3, policy: top2 },
      { start: 3, end: 6, policy: skip }, // its rows 2-4: the request's token 1 overflows
    ];
    let caught: unknown;
    try {
      routeBatch(
        1,
        probs,
        6,
        8,
        spans,
        undefined,
        values(6 * H, 7).map((v) => v + 2),
      );
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(RoutingFailedInBatchError);
    const failed = caught as RoutingFailedInBatchError;
    expect(failed.spans).toEqual([2]);
    expect(failed.message).toMatch(/layer 1 token 1: the linear substitute of expert 0 is not finite/);
    expect(failed.cause.token).toBe(1);
    expect(failed.cause.hint).toMatch(/kmoe calibrate --substitute-rank/);
  });

  it('counts the token within its request when one policy routes the whole batch', () => {
    const top2 = createRoutingPolicy(parseRoutingSpec('topk:2'), TINY_MIXTRAL);
    const row = [0.6, 0.2, 0.05, 0.05, 0.05, 0.05, 0, 0];
    // Batch row 3 is not a softmax: the second request's token 1.
    const probs = Float32Array.from([...row, ...row, ...row, ...row.map((v) => v * 3)]);
    const spans = [
      { start: 0, end: 2, policy: top2 },
      { start: 2, end: 4, policy: top2 },
    ];
    let caught: unknown;
    try {
      routeBatch(2, probs, 4, 8, spans);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(RoutingFailedInBatchError);
    const failed = caught as RoutingFailedInBatchError;
    expect(failed.spans).toEqual([1]);
    expect(failed.message).toMatch(/^routing topk:2: layer 2 token 1: row sums to 3/);
    expect(failed.cause.token).toBe(1);
  });
});
