// MoeBlock: per-request policies route their own rows, the backend receives exactly the decision
// and adds into the caller's buffer, observers see the layer after the combine; plans the runtime
// cannot compute yet are refused by name.

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
    const block = new MoeBlock(1, PLAN, backend);
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
    expect(seen[0]!.decision).toBe(out.decision);
    expect(seen[0]!.probs).toBe(probs);
    expect(seen[0]!.transfer?.messages[0]?.bytesOut).toBe(10);
  });

  it('refuses gates and layouts the runtime does not compute yet, naming the layer', () => {
    const backend = new ScalingExperts();
    expect(() => new MoeBlock(3, { ...PLAN, gate: 'sigmoid' }, backend)).toThrow(UnsupportedMoePlanError);
    expect(() => new MoeBlock(3, { ...PLAN, sharedExperts: 2 }, backend)).toThrow(
      'MoE layer 3: shared experts is not supported yet',
    );
  });
});
