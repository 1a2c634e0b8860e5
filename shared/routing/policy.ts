// The contract between the router (scores per token) and dispatch (experts + weights per token): a
// RoutingPolicy turns one MoE layer's gate scores into a CSR list of experts per token, following the
// model's native rule (RouterRule) for how scores are ranked, grouped, normalised and scaled.

import type { ExpertAssignment } from '../moe/expert-assignment.js';
import type { SubstituteBatchKernel } from './expert-substitutes.js';

/** Router output at one MoE layer for a batch, row-major. */
export interface RouterProbs {
  /** MoE layer index (0 .. RoutingModel.numLayers - 1), not the decoder layer. */
  readonly layer: number;
  readonly numTokens: number;
  readonly numExperts: number;
  /**
   * [numTokens, numExperts], the gate's scores over every expert (not logits, not top-k): a softmax
   * (each row sums to 1) or, for a sigmoid gate, independent sigmoid scores in [0, 1].
   */
  readonly probs: Float32Array;
  /**
   * [numTokens, numExperts], only for a rule with `selectionBias`: scores + correction bias, which
   * rank groups and experts (weights still come from `probs`).
   */
  readonly select?: Float32Array;
  /**
   * [numTokens, hidden], the experts' input rows (post-attention norm): needed only by a policy
   * whose prior applies linear substitutes of skipped experts to them.
   */
  readonly x?: Float32Array;
}

/**
 * A model's native routing rule (a family's MoE layer plan satisfies it). Policies choose how many
 * experts to keep; this says how they are ranked and weighted:
 * - ranking: by `select` when `selectionBias`, else by the scores; with `groups`, only experts of the
 *   topKGroups best groups are eligible (group score: best ranking score, or the sum of the two best
 *   with a selection bias).
 * - the normalised scores (softmax probabilities, or sigmoid scores divided by their row sum) are
 *   what entropy, top-p mass and ratios are measured on.
 * - weights: scores of the kept experts, divided by their sum when `renormalize` (sigmoid: sum +
 *   1e-20, as transformers), then times `routedScalingFactor`. Not renormalised stays not
 *   renormalised whatever K a policy keeps.
 */
export interface RouterRule {
  readonly gate: 'softmax' | 'sigmoid';
  readonly renormalize: boolean;
  readonly selectionBias?: boolean;
  readonly groups?: { readonly numGroups: number; readonly topKGroups: number };
  readonly routedScalingFactor: number;
}

/** Mixtral's rule: softmax, top-K renormalised, no groups, no scaling. */
export const SOFTMAX_RENORMALISED: RouterRule = {
  gate: 'softmax',
  renormalize: true,
  routedScalingFactor: 1,
};

/**
 * Experts chosen for each token (an ExpertAssignment): token t's experts are in descending ranking
 * order (ties: lower expert index first). Weights are >= 0, final (the expert graph multiplies by
 * them): under a renormalising rule they are renormalised over the kept experts (sum =
 * routedScalingFactor per token) for every policy except `skip`, which keeps native top-K weights
 * by design; under a rule without renormalisation they are the raw scores of the kept experts.
 */
export interface RoutingDecision extends ExpertAssignment {
  /** [numTokens] router entropy in nats over the full normalised scores (clamped at 0), for statistics. */
  readonly entropy: Float32Array;
  /**
   * [numTokens, hidden], optional: a calibrated estimate of what the experts this policy skipped
   * would have added (their native weight times their mean output, or times a linear substitute
   * of the token's expert input). The combine step adds it to
   * the MoE output; it costs no expert call and crosses no network.
   */
  readonly prior?: Float32Array;
}

/** What a policy needs to know about the model it routes for. */
export interface RoutingModel {
  /** MoE layers (dense decoder layers are not counted): per-layer parameters have one entry each. */
  readonly numLayers: number;
  readonly numExperts: number;
  /** Experts per token the model was trained with (Mixtral: 2). */
  readonly nativeK: number;
  /** Decoder-layer index of each MoE layer; absent = MoE layer i is decoder layer i. */
  readonly moeLayers?: readonly number[];
  /** The native routing rule; absent = SOFTMAX_RENORMALISED (Mixtral). */
  readonly rule?: RouterRule;
  /**
   * Width of the MoE layers' input and output rows (the hidden size). When known, per-expert tables
   * a profile carries (means, substitutes) must have it: a profile for another width is refused
   * when it is resolved, not in the middle of a batch.
   */
  readonly hidden?: number;
  /**
   * Not a property of the model but of the process that routes for it: how it applies linear
   * substitutes of skipped experts to a whole batch (the engine's onnxruntime graphs). Absent =
   * pair by pair in JS. Holds native sessions: never serialised (strip it before posting a model).
   */
  readonly substituteKernel?: SubstituteBatchKernel;
}

export interface RoutingPolicy {
  /** Canonical spec (`entropy:1,2@1.04`) or, for per-layer profiles a spec cannot express, the profile name. */
  readonly spec: string;
  /** Upper bound on experts per token: dispatch can size buffers with numTokens * maxK. */
  readonly maxK: number;
  route(input: RouterProbs): RoutingDecision;
}
