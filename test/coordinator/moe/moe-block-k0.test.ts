// K = 0 through the MoE seam: a token the allocator gives no expert leaves the layer as residual +
// prior exactly, costs no expert call, and appears in no worker's share of the dispatch.

import { describe, expect, it } from 'vitest';
import { planDispatch } from '../../../coordinator/cluster/dispatch-plan.js';
import type { ExpertBackend, ExpertTransfer } from '../../../coordinator/moe/expert-backend.js';
import { MoeBlock } from '../../../coordinator/moe/moe-block.js';
import type { MoeLayerPlan } from '../../../shared/families/layer-plan.js';
import type { ExpertAssignment } from '../../../shared/moe/expert-assignment.js';
import { encodeExpertMeans } from '../../../shared/routing/expert-means.js';
import { ALLOCATOR_FEATURE_SET, type AllocatorConfig } from '../../../shared/routing/policies/allocator.js';
import { createRoutingPolicy } from '../../../shared/routing/registry.js';
import type { F32Tensor } from '../../../shared/tensor.js';

const E = 4;
const H = 3;
const MODEL = { numLayers: 1, numExperts: E, nativeK: 2 };
const PLAN: MoeLayerPlan = {
  kind: 'moe',
  numExperts: E,
  nativeK: 2,
  gate: 'softmax',
  renormalize: true,
  sharedExperts: 0,
  routedScalingFactor: 1,
};
const F = 6;

/** Expert e multiplies its input by (e + 1); records every assignment it is given. */
class ScalingExperts implements ExpertBackend {
  readonly description = 'scaling experts';
  readonly calls: ExpertAssignment[] = [];
  async compute(_l: number, x: F32Tensor, a: ExpertAssignment, acc: Float32Array): Promise<ExpertTransfer> {
    this.calls.push(a);
    for (let t = 0; t < a.numTokens; t++) {
      for (let j = a.offsets[t]!; j < a.offsets[t + 1]!; j++) {
        for (let i = 0; i < H; i++)
          acc[t * H + i]! += a.weights[j]! * (a.experts[j]! + 1) * x.data[t * H + i]!;
      }
    }
    return { messages: [] };
  }
  async close(): Promise<void> {}
}

/**
 * K <= 1 for every token; K = 0 when the rank-1 expert's index is below `k0Below` (the dropAll head
 * scores the rank-1 expert's one-hot weight, which is its index).
 */
function allocator(k0Below: number): AllocatorConfig {
  const means = (offset: number) =>
    encodeExpertMeans({
      layers: 1,
      experts: E,
      hidden: H,
      data: Float32Array.from({ length: E * H }, (_, i) => 0.1 * i + offset),
    });
  return {
    kind: 'allocator',
    featureSet: ALLOCATOR_FEATURE_SET,
    layers: [
      {
        dropSecond: new Array<number>(F + E).fill(0),
        dropAll: [...new Array<number>(F).fill(0), 0, 1, 2, 3],
        k1Below: 1e9,
        k0Below,
      },
    ],
    expertMeans: means(0.05),
    leadMeans: means(-0.3),
  };
}

// Rank-1 experts of the four tokens: 0, 3, 1, 2.
const PROBS = Float32Array.from([
  0.6, 0.2, 0.1, 0.1, 0.1, 0.2, 0.1, 0.6, 0.3, 0.5, 0.1, 0.1, 0.1, 0.1, 0.7, 0.1,
]);
const X: F32Tensor = {
  dtype: 'float32',
  shape: [4, H],
  data: Float32Array.from({ length: 4 * H }, (_, i) => 1 + i),
};
const RESIDUAL = Float32Array.from({ length: 4 * H }, (_, i) => 10 * i - 7.25);

describe('MoeBlock with K = 0', () => {
  it('a layer where every token has K = 0 outputs residual + prior exactly and calls no expert', async () => {
    const backend = new ScalingExperts();
    const policy = createRoutingPolicy(allocator(1e9), MODEL);
    const acc = RESIDUAL.slice();
    const out = await new MoeBlock(0, 0, PLAN, backend).forward(
      { x: X, probs: PROBS, spans: [{ start: 0, end: 4, policy }], accumulate: acc },
      [],
    );
    expect(backend.calls).toHaveLength(0);
    expect(out.transfer).toBeUndefined();
    expect(Array.from(out.decision.offsets)).toEqual([0, 0, 0, 0, 0]);
    const prior = out.decision.prior!;
    // The prior is not zero (else the check below proves nothing) and the sum is exact in fp32.
    expect(prior.some((v) => v !== 0)).toBe(true);
    expect(Array.from(acc)).toEqual(Array.from(RESIDUAL, (r, i) => Math.fround(r + prior[i]!)));
  });

  it('mixed K: K = 0 tokens have no pairs, no dispatch share and output residual + prior', async () => {
    const backend = new ScalingExperts();
    // K = 0 for rank-1 experts 0 and 1 (tokens 0 and 2), K = 1 for tokens 1 and 3.
    const policy = createRoutingPolicy(allocator(1.5), MODEL);
    const acc = RESIDUAL.slice();
    const out = await new MoeBlock(0, 0, PLAN, backend).forward(
      { x: X, probs: PROBS, spans: [{ start: 0, end: 4, policy }], accumulate: acc },
      [],
    );
    const d = out.decision;
    expect(Array.from(d.offsets)).toEqual([0, 0, 1, 1, 2]);
    expect(Array.from(d.experts)).toEqual([3, 2]);
    expect(backend.calls).toHaveLength(1);
    for (const t of [0, 2]) {
      for (let i = 0; i < H; i++) {
        const at = t * H + i;
        expect(acc[at]).toBe(Math.fround(RESIDUAL[at]! + d.prior![at]!));
      }
    }
    // Two workers holding experts {0, 1} and {2, 3}: only tokens 1 and 3 travel, to worker 1.
    const holder = [0, 0, 1, 1];
    const shares = planDispatch(
      d,
      Int32Array.from(d.experts, (e) => holder[e]!),
      2,
    );
    expect(shares.map((s) => ({ worker: s.worker, tokens: Array.from(s.tokens) }))).toEqual([
      { worker: 1, tokens: [1, 3] },
    ]);
  });
});
