// What each decoder layer of a model is, as its family defines it: an MoE layer (with its gate,
// routing rule and shared experts) or a dense FFN layer. The engine, routing statistics, profiles,
// placement and the wire protocol read layers from here instead of assuming every layer is MoE.

/** How router logits become expert scores. */
export type GateKind = 'softmax' | 'sigmoid';

export interface MoeLayerPlan {
  readonly kind: 'moe';
  /** Routed experts of this layer (shared experts not included). */
  readonly numExperts: number;
  /** The K of the family's native top-K. */
  readonly nativeK: number;
  readonly gate: GateKind;
  /** Whether the native rule renormalises the kept experts' scores to sum 1. */
  readonly renormalize: boolean;
  /**
   * Always-computed experts beside the routed ones (Qwen2-MoE, DeepSeek-V3); 0 for Mixtral. They run
   * inside the layer graph (their gated output is part of hidden_out) and are not activations.
   */
  readonly sharedExperts: number;
  /**
   * True when experts are ranked by the gate's scores plus a learned correction bias (DeepSeek-V3
   * e_score_correction_bias): the layer graph then also outputs router_select = router_probs + bias,
   * which chooses groups and experts, while the weights still come from router_probs. Absent = false.
   */
  readonly selectionBias?: boolean;
  /**
   * Group-limited routing (DeepSeek-V2/V3): experts form numGroups groups of consecutive ids; keep the
   * topKGroups best groups (a group's score: its best selection score for a softmax gate, the sum of
   * its two best for a sigmoid gate with selectionBias, as transformers does), then take the top-K
   * among their experts.
   */
  readonly groups?: { readonly numGroups: number; readonly topKGroups: number };
  /** Multiplier on the routed experts' combined output (DeepSeek-V3 routed_scaling_factor); 1 otherwise. */
  readonly routedScalingFactor: number;
}

/** A layer with a dense FFN (DeepSeek's first_k_dense_replace layers, Qwen's mlp_only_layers). */
export interface DenseLayerPlan {
  readonly kind: 'dense';
}

export type DecoderLayerPlan = MoeLayerPlan | DenseLayerPlan;

/** One entry per decoder layer, in order. */
export type LayerPlan = readonly DecoderLayerPlan[];

/** Indices of the MoE layers, ascending. */
export function moeLayerIndices(plan: LayerPlan): number[] {
  return plan.flatMap((l, i) => (l.kind === 'moe' ? [i] : []));
}
