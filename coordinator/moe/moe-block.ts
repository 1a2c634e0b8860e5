// One MoE layer of the forward pass, in the shape of vLLM's modular fused-MoE: router probabilities
// -> routing policy (per request) -> prepare/dispatch -> experts -> combine/finalize, all through an
// ExpertBackend, then the layer's observers. The dense model calls one block per MoE layer of its
// layer plan; a dense layer has no block.

import type { MoeLayerPlan } from '../../shared/families/layer-plan.js';
import { pairCount } from '../../shared/moe/expert-assignment.js';
import type { RoutingDecision } from '../../shared/routing/policy.js';
import type { F32Tensor } from '../../shared/tensor.js';
import { type RoutedSpan, routeBatch } from './batch-routing.js';
import { UnsupportedMoePlanError } from './errors.js';
import type { ExpertBackend, ExpertTransfer } from './expert-backend.js';
import type { MoeObserver } from './observer.js';

export interface MoeBlockInput {
  /** The experts' input rows (post-attention norm), [numTokens, hidden]. */
  readonly x: F32Tensor;
  /** Router probabilities (the gate's output), [numTokens, numExperts]. */
  readonly probs: Float32Array;
  /** Which rows each request owns, with its routing policy. */
  readonly spans: readonly RoutedSpan[];
  /** [numTokens, hidden]: the MoE output is added into it (the residual stream). */
  readonly accumulate: Float32Array;
}

export interface MoeBlockOutput {
  readonly decision: RoutingDecision;
  readonly transfer: ExpertTransfer | undefined;
}

export class MoeBlock {
  constructor(
    readonly layer: number,
    readonly plan: MoeLayerPlan,
    private readonly backend: ExpertBackend,
  ) {
    // The seam is typed for these; their computation lands with the families that need them.
    if (plan.gate !== 'softmax') throw new UnsupportedMoePlanError(layer, `a ${plan.gate} gate`);
    if (plan.sharedExperts !== 0) throw new UnsupportedMoePlanError(layer, 'shared experts');
    if (plan.groups !== undefined) throw new UnsupportedMoePlanError(layer, 'group-limited routing');
    if (plan.routedScalingFactor !== 1) throw new UnsupportedMoePlanError(layer, 'a routed scaling factor');
  }

  async forward(input: MoeBlockInput, observers: readonly MoeObserver[]): Promise<MoeBlockOutput> {
    const { x, probs, spans, accumulate } = input;
    const numTokens = x.shape[0]!;
    const E = this.plan.numExperts;
    if (probs.length !== numTokens * E) {
      throw new RangeError(
        `layer ${this.layer}: router probabilities ${probs.length}, expected ${numTokens * E}`,
      );
    }
    const decision = routeBatch(this.layer, probs, numTokens, E, spans);
    // A policy's prior stands in for the experts it skipped: no expert call, no network.
    if (decision.prior) addInto(accumulate, decision.prior);
    // K = 0 tokens have no pairs, so no worker share carries them; a batch of only K = 0 tokens
    // makes no expert call and no round trip at all.
    const transfer =
      pairCount(decision) === 0 ? undefined : await this.backend.compute(this.layer, x, decision, accumulate);
    for (const o of observers) {
      await o.observe({ layer: this.layer, plan: this.plan, x, probs, decision, transfer });
    }
    return { decision, transfer };
  }
}

function addInto(dst: Float32Array, src: Float32Array): void {
  if (src.length !== dst.length)
    throw new RangeError(`routing prior has ${src.length} values, expected ${dst.length}`);
  for (let i = 0; i < dst.length; i++) dst[i]! += src[i]!;
}
