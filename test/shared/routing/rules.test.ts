// The routing kernel under every family's native rule against the plain sort-based rule the family
// tests check transformers with (test/shared/families/graph-forward.ts nativeRoute): softmax with
// and without renormalisation, sigmoid scores with a correction bias, group-limited selection and a
// routed scaling factor. topk:<native K> must pick the same experts in the same order with the same
// weights; a smaller K keeps the rule (raw weights stay raw, renormalised ones renormalise over K).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { MoeLayerPlan } from '../../../shared/families/layer-plan.js';
import type { RoutingModel } from '../../../shared/routing/policy.js';
import { createRoutingPolicy } from '../../../shared/routing/registry.js';
import { nativeRoute } from '../families/graph-forward.js';

const PLANS: Record<string, MoeLayerPlan> = {
  'qwen2-moe (softmax, raw weights)': {
    kind: 'moe',
    numExperts: 60,
    nativeK: 4,
    gate: 'softmax',
    renormalize: false,
    sharedExperts: 1,
    routedScalingFactor: 1,
  },
  'olmoe (softmax 64, top-8 raw)': {
    kind: 'moe',
    numExperts: 64,
    nativeK: 8,
    gate: 'softmax',
    renormalize: false,
    sharedExperts: 0,
    routedScalingFactor: 1,
  },
  'deepseek-v3 (sigmoid, bias, groups, x2.5)': {
    kind: 'moe',
    numExperts: 16,
    nativeK: 4,
    gate: 'sigmoid',
    renormalize: true,
    selectionBias: true,
    groups: { numGroups: 4, topKGroups: 2 },
    sharedExperts: 1,
    routedScalingFactor: 2.5,
  },
};

function modelOf(plan: MoeLayerPlan): RoutingModel {
  return {
    numLayers: 1,
    numExperts: plan.numExperts,
    nativeK: plan.nativeK,
    rule: {
      gate: plan.gate,
      renormalize: plan.renormalize,
      ...(plan.selectionBias ? { selectionBias: true } : {}),
      ...(plan.groups ? { groups: plan.groups } : {}),
      routedScalingFactor: plan.routedScalingFactor,
    },
  };
}

/** One token's scores (softmax or sigmoid of random logits, in fp32) and selection scores. */
function rowArb(plan: MoeLayerPlan) {
  const E = plan.numExperts;
  return fc
    .record({
      logits: fc.array(fc.double({ min: -4, max: 4, noNaN: true }), { minLength: E, maxLength: E }),
      bias: fc.array(fc.double({ min: -0.3, max: 0.3, noNaN: true }), { minLength: E, maxLength: E }),
    })
    .map(({ logits, bias }) => {
      let scores: Float32Array;
      if (plan.gate === 'softmax') {
        const m = Math.max(...logits);
        const ex = logits.map((l) => Math.exp(l - m));
        const z = ex.reduce((a, b) => a + b, 0);
        scores = Float32Array.from(ex.map((e) => e / z));
      } else {
        scores = Float32Array.from(logits.map((l) => 1 / (1 + Math.exp(-l))));
      }
      const select = plan.selectionBias ? Float32Array.from(scores.map((s, e) => s + bias[e]!)) : undefined;
      return { scores, select };
    });
}

describe.each(Object.entries(PLANS))('%s', (_, plan) => {
  const model = modelOf(plan);

  it('topk:<native K> is the native rule: same experts, order and weights', () => {
    const policy = createRoutingPolicy({ kind: 'topk', k: plan.nativeK }, model);
    fc.assert(
      fc.property(rowArb(plan), ({ scores, select }) => {
        const d = policy.route({
          layer: 0,
          numTokens: 1,
          numExperts: plan.numExperts,
          probs: scores,
          ...(select ? { select } : {}),
        });
        const ref = nativeRoute(plan, scores, select);
        expect([...d.experts]).toEqual(ref.experts);
        for (let i = 0; i < ref.weights.length; i++) expect(d.weights[i]).toBeCloseTo(ref.weights[i]!, 6);
      }),
      { numRuns: 200 },
    );
  });

  it('topk:1 and topk:2 keep the rule: the native ranking prefix, raw or renormalised weights', () => {
    fc.assert(
      fc.property(rowArb(plan), fc.constantFrom(1, 2), ({ scores, select }, k) => {
        const policy = createRoutingPolicy({ kind: 'topk', k }, model);
        const d = policy.route({
          layer: 0,
          numTokens: 1,
          numExperts: plan.numExperts,
          probs: scores,
          ...(select ? { select } : {}),
        });
        const ref = nativeRoute(plan, scores, select);
        expect([...d.experts]).toEqual(ref.experts.slice(0, k));
        const kept = ref.experts.slice(0, k).map((e) => scores[e]!);
        const sum = kept.reduce((a, b) => a + b, 0);
        kept.forEach((s, i) => {
          const w = (plan.renormalize ? s / sum : s) * plan.routedScalingFactor;
          expect(d.weights[i]).toBeCloseTo(w, 6);
        });
      }),
      { numRuns: 200 },
    );
  });

  it('skip:TAU keeps a prefix of the native experts with their native weights', () => {
    const native = createRoutingPolicy({ kind: 'topk', k: plan.nativeK }, model);
    fc.assert(
      fc.property(rowArb(plan), fc.constantFrom(0.05, 0.1, 0.2), ({ scores, select }, tau) => {
        const input = {
          layer: 0,
          numTokens: 1,
          numExperts: plan.numExperts,
          probs: scores,
          ...(select ? { select } : {}),
        };
        const n = native.route(input);
        const d = createRoutingPolicy({ kind: 'skip', tau }, model).route(input);
        const k = d.offsets[1]!;
        expect([...d.experts]).toEqual([...n.experts.subarray(0, k)]);
        expect([...d.weights]).toEqual([...n.weights.subarray(0, k)]);
        // Dropped from the first native weight (before scaling) below TAU on.
        const w = (i: number) => n.weights[i]! / plan.routedScalingFactor;
        for (let i = 1; i < k; i++) expect(w(i)).toBeGreaterThanOrEqual(tau * (1 - 1e-6));
        if (k < plan.nativeK) expect(w(k)).toBeLessThan(tau * (1 + 1e-6));
      }),
      { numRuns: 200 },
    );
  });
});
