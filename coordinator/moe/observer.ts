// Observers of the MoE seam: routing statistics, calibration probes and dispatch accounting watch
// each MoE layer of a forward pass instead of being branches in the engine.

import type { MoeLayerPlan } from '../../shared/families/layer-plan.js';
import type { RoutingDecision } from '../../shared/routing/policy.js';
import type { F32Tensor } from '../../shared/tensor.js';
import type { ExpertTransfer } from './expert-backend.js';

/** One MoE layer of one forward pass, after its experts were combined. */
export interface MoeLayerEvent<T extends ExpertTransfer = ExpertTransfer> {
  /** Decoder layer index (what experts and workers are keyed by). */
  readonly layer: number;
  /** Index among the MoE layers (what statistics, profiles and calibration are indexed by). */
  readonly moeLayer: number;
  readonly plan: MoeLayerPlan;
  /** The experts' input rows, [numTokens, hidden]. */
  readonly x: F32Tensor;
  /** Router scores the decision was made from (softmax, or sigmoid: see plan.gate), [numTokens, numExperts]. */
  readonly probs: Float32Array;
  /** Selection scores (router_select) when the plan has a selection bias. */
  readonly select?: Float32Array;
  readonly decision: RoutingDecision;
  /** What the transport moved for this layer; undefined when the experts are in this process. */
  readonly transfer: T | undefined;
}

export interface MoeObserver<T extends ExpertTransfer = ExpertTransfer> {
  /** May be async (a probe computing extra expert outputs); the block awaits it before moving on. */
  observe(event: MoeLayerEvent<T>): void | Promise<void>;
}
