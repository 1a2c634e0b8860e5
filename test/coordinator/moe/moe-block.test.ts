// MoeBlock: per-request policies route their own rows, the backend receives exactly the decision
// and adds into the caller's buffer, observers see the layer after the combine (with the decoder and
// MoE layer indices); sigmoid gates with a selection bias, groups and a routed scaling factor route
// by the native rule; a selection bias on a softmax gate is refused by name.

import { describe, expect, it } from 'vitest';
import { UnsupportedMoePlanError } from '../../../coordinator/moe/errors.js';
import type { ExpertBackend, ExpertTransfer } from '../../../coordinator/moe/expert-backend.js';
import { MoeBlock } from '../../../coordinator/moe/moe-block.js';
import type { MoeLayerEvent } from '../../../coordinator/moe/observer.js';
import type { MoeLayerPlan } from '../../../shared/families/layer-plan.js';
import type { ExpertAssignment } from '../../../shared/moe/expert-assignment.js';
import { createRoutingPolicy } from '../../../shared/routing/registry.js';
import type { F32Tensor } from '../../../shared/tensor.js';

const MODEL = { numLayers: 2, numExperts: 4, nativeK: 2 };
const PLAN: MoeLayerPlan = {
  kind: 'moe',
  numExperts: 4,
  nativeK: 2,
  gate: 'softmax',
  renormalize: true,
  sharedExperts: 0,
  routedScalingFactor: 1,
};

/** Expert e multiplies its input by (e + 1): easy to check sums by hand. */
class ScalingExperts implements ExpertBackend {
  readonly description = 'scaling experts';
  readonly calls: ExpertAssignment[] = [];

  async compute(
    _layer: number,
    x: F32Tensor,
    a: ExpertAssignment,
    acc: Float32Array,
  ): Promise<ExpertTransfer> {
    this.calls.push(a);
    const H = x.shape[1]!;
    for (let t = 0; t < a.numTokens; t++) {
      for (let j = a.offsets[t]!; j < a.offsets[t + 1]!; j++) {
        for (let i = 0; i < H; i++)
          acc[t * H + i]! += a.weights[j]! * (a.experts[j]! + 1) * x.data[t * H + i]!;
      }
    }
    return {
      messages: [
        {
          worker: 0,
          tokens: Int32Array.from([0, 1]),
          pairs: a.offsets[a.numTokens]!,
          bytesOut: 10,
          bytesIn: 6,
          seconds: 0,
        },
      ],
    };
  }

  async close(): Promise<void> {}
}

describe('MoeBlock', () => {
  it('routes each request with its policy, combines into the buffer and shows observers the layer', async () => {
    const backend = new ScalingExperts();
    const block = new MoeBlock(1, 1, PLAN, backend);
    const top1 = createRoutingPolicy({ kind: 'topk', k: 1 }, MODEL);
    const top2 = createRoutingPolicy({ kind: 'topk', k: 2 }, MODEL);
    // Token 0 prefers expert 2 then 0; token 1 prefers expert 3 then 1.
    const probs = Float32Array.from([0.3, 0.1, 0.5, 0.1, 0.1, 0.2, 0.1, 0.6]);
    const x: F32Tensor = { dtype: 'float32', shape: [2, 2], data: Float32Array.from([1, 2, 1, 1]) };
    const acc = Float32Array.from([10, 10, 0, 0]);
    const seen: MoeLayerEvent[] = [];
    const out = await block.forward(
      {
        x,
        probs,
        spans: [
          { start: 0, end: 1, policy: top1 },
          { start: 1, end: 2, policy: top2 },
        ],
        accumulate: acc,
      },
      [{ observe: (e) => void seen.push(e) }],
    );
    expect([...out.decision.offsets]).toEqual([0, 1, 3]);
    expect([...out.decision.experts]).toEqual([2, 3, 1]);
    expect(backend.calls).toEqual([out.decision]);
    // Token 0: 10 + 3 * x; token 1: weights 0.6/0.8 and 0.2/0.8 on experts 3 and 1 -> 0.75*4 + 0.25*2 = 3.5.
    expect([...acc]).toEqual([13, 16, 3.5, 3.5]);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.layer).toBe(1);
    expect(seen[0]!.moeLayer).toBe(1);
    expect(seen[0]!.decision).toBe(out.decision);
    expect(seen[0]!.probs).toBe(probs);
    expect(seen[0]!.transfer?.messages[0]?.bytesOut).toBe(10);
  });

  it('routes a sigmoid gate by selection scores within the best groups, weights renormalised and scaled', async () => {
    const backend = new ScalingExperts();
    const plan: MoeLayerPlan = {
      ...PLAN,
      gate: 'sigmoid',
      selectionBias: true,
      groups: { numGroups: 2, topKGroups: 1 },
      sharedExperts: 1,
      routedScalingFactor: 2.5,
    };
    // Decoder layer 3 is the MoE layer 0 (a dense layer came first).
    const block = new MoeBlock(3, 0, plan, backend);
    const model = {
      numLayers: 1,
      numExperts: 4,
      nativeK: 2,
      moeLayers: [3],
      rule: {
        gate: 'sigmoid' as const,
        renormalize: true,
        selectionBias: true,
        groups: { numGroups: 2, topKGroups: 1 },
        routedScalingFactor: 2.5,
      },
    };
    const native = createRoutingPolicy({ kind: 'topk', k: 2 }, model);
    // Scores s; selection u = s + bias (bias -0.5, 0, 0, 0.3). Group scores (two best u): {0,1} 0.6,
    // {2,3} 1.4 -> group 1; experts by u: 3 (0.8), 2 (0.6); weights s / (0.5 + 0.6) * 2.5. Expert 0
    // has the best score but loses on u.
    const probs = Float32Array.from([0.9, 0.2, 0.6, 0.5]);
    const select = Float32Array.from([0.4, 0.2, 0.6, 0.8]);
    const x: F32Tensor = { dtype: 'float32', shape: [1, 1], data: Float32Array.from([1]) };
    const acc = Float32Array.from([1]);
    const seen: MoeLayerEvent[] = [];
    const out = await block.forward(
      { x, probs, select, spans: [{ start: 0, end: 1, policy: native }], accumulate: acc },
      [{ observe: (e) => void seen.push(e) }],
    );
    expect([...out.decision.experts]).toEqual([3, 2]);
    expect(out.decision.weights[0]).toBeCloseTo((0.5 / 1.1) * 2.5, 6);
    expect(out.decision.weights[1]).toBeCloseTo((0.6 / 1.1) * 2.5, 6);
    // Entropy over the normalised scores s / sum(s).
    const m = [0.9, 0.2, 0.6, 0.5].map((v) => v / 2.2);
    expect(out.decision.entropy[0]).toBeCloseTo(-m.reduce((h, p) => h + p * Math.log(p), 0), 5);
    // 1 + (0.5 * 4 + 0.6 * 3) / 1.1 * 2.5
    expect(acc[0]).toBeCloseTo(1 + ((0.5 * 4 + 0.6 * 3) / 1.1) * 2.5, 5);
    expect(seen[0]!.layer).toBe(3);
    expect(seen[0]!.moeLayer).toBe(0);
    expect(seen[0]!.select).toBe(select);
    // topk:1 keeps the plan's renormalisation: the one kept expert weighs 1 * 2.5.
    const top1 = createRoutingPolicy({ kind: 'topk', k: 1 }, model);
    const one = await block.forward(
      { x, probs, select, spans: [{ start: 0, end: 1, policy: top1 }], accumulate: Float32Array.from([0]) },
      [],
    );
    expect([...one.decision.experts]).toEqual([3]);
    expect(one.decision.weights[0]).toBeCloseTo(2.5, 6);
    // More experts than the kept groups hold cannot be asked for.
    expect(() => createRoutingPolicy({ kind: 'topk', k: 3 }, model)).toThrow('group-limited routing');
  });

  it('keeps raw softmax weights when the plan does not renormalise, for any K', async () => {
    const backend = new ScalingExperts();
    const block = new MoeBlock(0, 0, { ...PLAN, renormalize: false }, backend);
    const model = {
      ...MODEL,
      rule: { gate: 'softmax' as const, renormalize: false, routedScalingFactor: 1 },
    };
    const probs = Float32Array.from([0.3, 0.1, 0.5, 0.1]);
    const x: F32Tensor = { dtype: 'float32', shape: [1, 1], data: Float32Array.from([1]) };
    for (const k of [2, 1]) {
      const policy = createRoutingPolicy({ kind: 'topk', k }, model);
      const out = await block.forward(
        { x, probs, spans: [{ start: 0, end: 1, policy }], accumulate: Float32Array.from([0]) },
        [],
      );
      expect([...out.decision.weights]).toEqual(
        [...probs.filter((p) => p >= 0.3)].sort().reverse().slice(0, k),
      );
    }
  });

  it('refuses a selection bias on a softmax gate, naming the layer', () => {
    const backend = new ScalingExperts();
    expect(() => new MoeBlock(3, 2, { ...PLAN, selectionBias: true }, backend)).toThrow(
      UnsupportedMoePlanError,
    );
    expect(() => new MoeBlock(3, 2, { ...PLAN, selectionBias: true }, backend)).toThrow('MoE layer 3');
  });
});
