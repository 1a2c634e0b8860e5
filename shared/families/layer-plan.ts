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
  /** Always-computed experts beside the routed ones (Qwen2-MoE, DeepSeek-V3); 0 for Mixtral. */
  readonly sharedExperts: number;
  /** Group-limited routing (DeepSeek-V3): pick topKGroups of numGroups groups first. */
  readonly groups?: { readonly numGroups: number; readonly topKGroups: number };
  /** Multiplier on the routed experts' combined output (DeepSeek-V3 routed_scaling_factor); 1 otherwise. */
  readonly routedScalingFactor: number;
}

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
