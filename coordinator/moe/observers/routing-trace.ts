// Routing decisions as an observer of the MoE seam: per MoE layer of a forward pass, the experts
// and combine weights the routing in force chose for every token row, and the model's native top-K
// on the same router scores. `kmoe eval --trace` writes them to a file (coordinator/evaluation/
// routing-trace.ts) that `kmoe bench traffic` costs without running the model.

import type { ExpertAssignment } from '../../../shared/moe/expert-assignment.js';
import type { RoutingModel, RoutingPolicy } from '../../../shared/routing/policy.js';
import { createRoutingPolicy } from '../../../shared/routing/registry.js';
import type { MoeLayerEvent, MoeObserver } from '../observer.js';

/** One MoE layer of one forward pass: the decision and native top-K, CSR over the same rows. */
export interface RoutingTraceLayer {
  /** Decoder layer index. */
  readonly layer: number;
  /** Index among the MoE layers. */
  readonly moeLayer: number;
  readonly chosen: ExpertAssignment;
  readonly native: ExpertAssignment;
}

export class RoutingTraceRecorder implements MoeObserver {
  private readonly nativePolicy: RoutingPolicy;
  private readonly recorded: RoutingTraceLayer[] = [];

  constructor(private readonly model: RoutingModel) {
    this.nativePolicy = createRoutingPolicy({ kind: 'topk', k: model.nativeK }, model);
  }

  observe(e: MoeLayerEvent): void {
    const d = e.decision;
    const native = this.nativePolicy.route({
      layer: e.moeLayer,
      numTokens: d.numTokens,
      numExperts: this.model.numExperts,
      probs: e.probs,
      ...(e.select ? { select: e.select } : {}),
    });
    this.recorded.push({
      layer: e.layer,
      moeLayer: e.moeLayer,
      // Copies: a policy may reuse its output buffers for the next layer.
      chosen: copyAssignment(d),
      native: copyAssignment(native),
    });
  }

  /** What was recorded, in the order the layers ran. */
  layers(): RoutingTraceLayer[] {
    return this.recorded;
  }
}

function copyAssignment(a: ExpertAssignment): ExpertAssignment {
  const n = a.offsets[a.numTokens]!;
  return {
    numTokens: a.numTokens,
    offsets: a.offsets.slice(0, a.numTokens + 1),
    experts: a.experts.slice(0, n),
    weights: a.weights.slice(0, n),
  };
}
