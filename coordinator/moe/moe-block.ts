// One MoE layer of the forward pass, in the shape of vLLM's modular fused-MoE: router probabilities
// -> routing policy (per request) -> prepare/dispatch -> experts -> combine/finalize, all through an
// ExpertBackend, then the layer's observers. The dense model calls one block per MoE layer of its
// layer plan; a dense layer has no block.

import type { MoeLayerPlan } from '../../shared/families/layer-plan.js';
import { type ExpertAssignment, pairCount } from '../../shared/moe/expert-assignment.js';
import type { RoutingDecision } from '../../shared/routing/policy.js';
import type { F32Tensor } from '../../shared/tensor.js';
import { type RoutedSpan, routeBatch } from './batch-routing.js';
import {
  MissingExpertsError,
  MissingExpertsInBatchError,
  type SpanNeed,
  UnsupportedMoePlanError,
} from './errors.js';
import type { ExpertBackend, ExpertTransfer } from './expert-backend.js';
import type { MoeLayerEvent, MoeObserver } from './observer.js';

export interface MoeBlockInput {
  /** The experts' input rows (post-attention norm), [numTokens, hidden]. */
  readonly x: F32Tensor;
  /** Router scores (the gate's output: softmax or sigmoid), [numTokens, numExperts]. */
  readonly probs: Float32Array;
  /** Selection scores (router_select), [numTokens, numExperts]: required when the plan has a selection bias. */
  readonly select?: Float32Array;
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
  /**
   * `layer` is the decoder layer (what experts are keyed by), `moeLayer` its index among the MoE
   * layers (what policies, statistics and profiles are indexed by). Shared experts are not the
   * block's business: they run in the layer graph, whose hidden_out already holds their output.
   */
  constructor(
    readonly layer: number,
    readonly moeLayer: number,
    readonly plan: MoeLayerPlan,
    private readonly backend: ExpertBackend,
  ) {
    if (plan.selectionBias && plan.gate !== 'sigmoid')
      throw new UnsupportedMoePlanError(layer, `a selection bias on a ${plan.gate} gate`);
  }

  async forward(input: MoeBlockInput, observers: readonly MoeObserver[]): Promise<MoeBlockOutput> {
    const { x, probs, select, spans, accumulate } = input;
    const numTokens = x.shape[0]!;
    const E = this.plan.numExperts;
    if (probs.length !== numTokens * E) {
      throw new RangeError(
        `layer ${this.layer}: router probabilities ${probs.length}, expected ${numTokens * E}`,
      );
    }
    if (this.plan.selectionBias && select?.length !== probs.length) {
      throw new RangeError(
        `layer ${this.layer}: selection scores ${select?.length ?? 'missing'}, expected ${numTokens * E}`,
      );
    }
    const decision = routeBatch(
      this.moeLayer,
      probs,
      numTokens,
      E,
      spans,
      this.plan.selectionBias ? select : undefined,
      x.data,
    );
    // A policy's prior stands in for the experts it skipped: no expert call, no network.
    if (decision.prior) addInto(accumulate, decision.prior);
    // K = 0 tokens have no pairs, so no worker share carries them; a batch of only K = 0 tokens
    // makes no expert call and no round trip at all.
    const transfer =
      pairCount(decision) === 0 ? undefined : await this.compute(x, decision, spans, accumulate);
    const base = {
      layer: this.layer,
      moeLayer: this.moeLayer,
      plan: this.plan,
      x,
      probs,
      decision,
      transfer,
    };
    const event: MoeLayerEvent = this.plan.selectionBias && select ? { ...base, select } : base;
    for (const o of observers) await o.observe(event);
    return { decision, transfer };
  }

  /** The backend's compute; experts it cannot reach are charged to the batch items routed to them. */
  private async compute(
    x: F32Tensor,
    decision: RoutingDecision,
    spans: readonly RoutedSpan[],
    accumulate: Float32Array,
  ): Promise<ExpertTransfer | undefined> {
    try {
      return await this.backend.compute(this.layer, x, decision, accumulate);
    } catch (err) {
      if (!(err instanceof MissingExpertsError) || err instanceof MissingExpertsInBatchError) throw err;
      const needs = spansNeeding(decision, spans, err.missing);
      if (needs.length === 0) throw err;
      throw new MissingExpertsInBatchError(this.layer, needs, err);
    }
  }
}

/** The spans with a pair on one of `missing`, and which of them each needs (ascending). */
export function spansNeeding(
  decision: ExpertAssignment,
  spans: readonly RoutedSpan[],
  missing: readonly number[],
): SpanNeed[] {
  const gone = new Set(missing);
  const needs: SpanNeed[] = [];
  spans.forEach((sp, span) => {
    const hit = new Set<number>();
    for (let j = decision.offsets[sp.start]!; j < decision.offsets[sp.end]!; j++) {
      const e = decision.experts[j]!;
      if (gone.has(e)) hit.add(e);
    }
    if (hit.size > 0) needs.push({ span, missing: [...hit].sort((a, b) => a - b) });
  });
  return needs;
}

function addInto(dst: Float32Array, src: Float32Array): void {
  if (src.length !== dst.length)
    throw new RangeError(`routing prior has ${src.length} values, expected ${dst.length}`);
  for (let i = 0; i < dst.length; i++) dst[i]! += src[i]!;
}
