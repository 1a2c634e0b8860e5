// What a model family is to the rest of kmoe: how its config.json becomes a typed config, which
// tensor plays which role, which ONNX graphs compute its layers, and what each decoder layer is
// (MoE or dense). One implementation per `model_type`, found through registry.ts.

import type { ExpertWeightFormat } from '../onnx/expert-weight-format.js';
import type { F32Tensor, Tensor } from '../tensor.js';
import type { LayerPlan } from './layer-plan.js';
import type { AnyExpectedShapes, AnyTensorNames, TensorSpec } from './tensor-table.js';

/** The dtype the checkpoint was saved in, as config.json states it (informational: tensors carry their own). */
export type TorchDtype = 'bfloat16' | 'float16' | 'float32';

/**
 * The fields every family's config has, camelCase, validated. A family with more (shared experts,
 * dense leading layers) extends this and exposes the extra fields through `ModelFamily.ownConfig`.
 */
export interface ModelConfig {
  /** config.json `model_type`: the key of the family in the registry. */
  readonly modelType: string;
  readonly hiddenSize: number;
  /** Hidden size of one expert's FFN. */
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  /** Routed experts per MoE layer. */
  readonly numExperts: number;
  /** The K of top-K routing the model was trained with. */
  readonly numExpertsPerTok: number;
  readonly vocabSize: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly maxPositionEmbeddings: number;
  /** Null when config.json gives none (some families' configs say null). */
  readonly bosTokenId: number | null;
  readonly eosTokenId: readonly number[];
  readonly tieWordEmbeddings: boolean;
  /** Sliding-window attention span, or null for full attention. */
  readonly slidingWindow: number | null;
  /** Null when config.json does not say. */
  readonly torchDtype: TorchDtype | null;
}

/** Shape facts the graphs and their callers agree on. */
export interface GraphDims {
  readonly hidden: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /**
   * Width of both KV-cache rows when they are equal (kvHeads * headDim); for a family where they
   * differ (DeepSeek MLA) it is keyWidth, and an engine must use keyWidth / valueWidth.
   */
  readonly kvWidth: number;
  /** Width of one cached key row (past_key / new_key): kvHeads * headDim, or MLA's heads * (nope + rope). */
  readonly keyWidth: number;
  /** Width of one cached value row (past_value / new_value): kvHeads * headDim, or MLA's heads * v_head_dim. */
  readonly valueWidth: number;
  /**
   * Rotary dimensions per head: the cos/sin inputs are [B,S,ropeDim/2], cos/sin of position *
   * ropeTheta^(-2i/ropeDim). headDim for rotate-half families; MLA's qk_rope_head_dim (interleaved
   * pairs inside the graph: the tables are the same).
   */
  readonly ropeDim: number;
  readonly experts: number;
  readonly ffn: number;
  readonly vocab: number;
  readonly eps: number;
}

/** Where weights come from: a Checkpoint satisfies this (families never open files themselves). */
export interface TensorSource {
  readonly config: ModelConfig;
  has(name: string): boolean;
  /** The tensor widened to fp32; with `expectShape`, a mismatch is an error. */
  readF32(name: string, expectShape?: readonly number[]): Promise<F32Tensor>;
  /** The tensor as stored, for weights kept in their 16-bit storage format (`bf16` experts). */
  read(name: string, expectShape?: readonly number[]): Promise<StoredWeight>;
}

/** A weight in one of the dtypes checkpoints store. */
export type StoredWeight = Tensor<'bfloat16'> | Tensor<'float16'> | Tensor<'float32'>;

/** The LM head as two graphs over [N, hidden] rows of final hidden states (before the final norm). */
export interface HeadGraphs {
  /** inputs hidden [N,H]; output logits [N,V]. */
  readonly logits: Uint8Array;
  /** inputs hidden [N,H], targets int64 [N,1]; output nll [N] (negative log-likelihood of each target). */
  readonly nll: Uint8Array;
}

/**
 * One model family. Graph methods read the weights they need from `source` by the family's tensor
 * names and return serialized ONNX models with these fixed interfaces (widths from GraphDims):
 * - dense layer (one per decoder layer, whatever its LayerPlan kind), for a padded batch [B, S] with
 *   P cached positions:
 *   inputs hidden [B,S,H], cos/sin [B,S,ropeDim/2], past_key [B,P,keyWidth], past_value
 *   [B,P,valueWidth], attn_bias [B,1,S,P+S]; outputs new_key [B,S,keyWidth], new_value
 *   [B,S,valueWidth], and
 *   - for an MoE layer: hidden_out = residual after attention + the shared experts' output (if the
 *     layer has any, gated as the family gates them): what the routed experts' weighted outputs are
 *     added to; moe_input [B,S,H] (the normed input of the routed experts); router_probs [B,S,E], the
 *     scores the routing weights are taken from (`gate` softmax: probabilities over all experts;
 *     `gate` sigmoid: sigmoid of the router logits); and, only when the layer plan has
 *     `selectionBias`, router_select [B,S,E] = router_probs + the router's correction bias, the
 *     scores that rank experts and groups (weights still come from router_probs).
 *   - for a dense layer: hidden_out = the layer's complete output (attention and FFN residuals); no
 *     moe_input / router outputs.
 * - expert: inputs x [N,H], weight [N,1]; output y [N,H] = weight * expert(x). The weight is the
 *   final routing weight: any renormalisation and routedScalingFactor are applied by routing.
 */
export interface ModelFamily<C extends ModelConfig = ModelConfig> {
  /** The config.json `model_type` this family loads. */
  readonly modelType: string;
  /**
   * Validates a parsed config.json object against the family's schema and consistency rules.
   * Throws FamilyConfigError naming the field; the config.json reader adds the file.
   */
  parseConfig(raw: Readonly<Record<string, unknown>>): C;
  /** The family's own typed view of a config it parsed; throws FamilyMismatchError for another family's. */
  ownConfig(config: ModelConfig): C;
  /** What each decoder layer is (MoE with its gate and shared experts, or dense), in layer order. */
  layerPlan(config: ModelConfig): LayerPlan;
  graphDims(config: ModelConfig): GraphDims;
  /** Hugging Face tensor names per role (`tensorNames.expert(0, 3).w1`); layer roles vary by family. */
  readonly tensorNames: AnyTensorNames;
  /** The shape of every role for a config ([out, in] for projections, as nn.Linear stores them). */
  expectedShapes(config: ModelConfig): AnyExpectedShapes;
  /**
   * Every tensor the checkpoint must (or may) hold for this config, globals first, then by layer
   * (a dense layer lists its FFN and no router or experts).
   */
  tensorSpecs(config: ModelConfig): TensorSpec[];
  denseLayerGraph(source: TensorSource, layer: number): Promise<Uint8Array>;
  expertGraph(
    source: TensorSource,
    layer: number,
    expert: number,
    format: ExpertWeightFormat,
  ): Promise<Uint8Array>;
  headGraphs(source: TensorSource): Promise<HeadGraphs>;
  /** Token embedding table [vocab, hidden]. */
  embedding(source: TensorSource): Promise<F32Tensor>;
}
