// The contract between the router (probabilities per token) and dispatch (experts + weights per
// token): a RoutingPolicy turns one MoE layer's softmax into a CSR list of experts per token.

import type { ExpertAssignment } from '../moe/expert-assignment.js';

/** Router output at one MoE layer for a batch: softmax over ALL experts, row-major. */
export interface RouterProbs {
  readonly layer: number;
  readonly numTokens: number;
  readonly numExperts: number;
  /** [numTokens, numExperts], each row a softmax over every expert (not logits, not top-k). */
  readonly probs: Float32Array;
}

/**
 * Experts chosen for each token (an ExpertAssignment): token t's experts are in descending
 * probability order (ties: lower expert index first). Weights are >= 0 and renormalised over the
 * kept experts (sum 1 per token) for every policy except `skip`, which keeps native top-K weights
 * (sum <= 1) by design.
 */
export interface RoutingDecision extends ExpertAssignment {
  /** [numTokens] router entropy in nats over the full softmax (clamped at 0), for statistics. */
  readonly entropy: Float32Array;
  /**
   * [numTokens, hidden], optional: a calibrated estimate of what the experts this policy skipped
   * would have added (their mean output times their native weight). The combine step adds it to
   * the MoE output; it costs no expert call and crosses no network.
   */
  readonly prior?: Float32Array;
}

/** What a policy needs to know about the model it routes for. */
export interface RoutingModel {
  readonly numLayers: number;
  readonly numExperts: number;
  /** Experts per token the model was trained with (Mixtral: 2). */
  readonly nativeK: number;
}

export interface RoutingPolicy {
  /** Canonical spec (`entropy:1,2@1.04`) or, for per-layer profiles a spec cannot express, the profile name. */
  readonly spec: string;
  /** Upper bound on experts per token: dispatch can size buffers with numTokens * maxK. */
  readonly maxK: number;
  route(input: RouterProbs): RoutingDecision;
}
