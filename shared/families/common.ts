// Pieces every family after Mixtral shares: graph dimensions of grouped-query attention, reading
// the routed experts, the LM head and the embedding through a family's tensor names, the
// expert / head graphs (the same math as Mixtral's, so Mixtral's builders are reused), and the
// whole ModelFamily of a softmax-routed GQA decoder (Qwen2-MoE, Qwen3-MoE, OLMoE), whose members
// differ only in their config, tensor table, layer weights, shared experts and dense layers.

import { f16ToF32, f32ToBf16 } from '../dtype.js';
import type { ExpertWeightFormat } from '../onnx/expert-weight-format.js';
import { quantizeInt4Blockwise } from '../onnx/int4-weights.js';
import { quantizeInt8Blockwise } from '../onnx/int8-weights.js';
import { type F32Tensor, makeTensor, type Tensor } from '../tensor.js';
import { buildDecoderLayerGraph, type DecoderLayerWeights, type SwiGluWeights } from './decoder-graph.js';
import { FamilyFeatureError } from './errors.js';
import type {
  GraphDims,
  HeadGraphs,
  ModelConfig,
  ModelFamily,
  StoredWeight,
  TensorSource,
} from './family.js';
import type { LayerPlan, MoeLayerPlan } from './layer-plan.js';
import {
  buildBf16ExpertGraph,
  buildExpertGraph,
  buildLogitsGraph,
  buildNllGraph,
  buildQuantizedExpertGraph,
} from './mixtral/graphs.js';
import type { ExpectedShapes, LayerRole, TensorNames, TensorSpec } from './tensor-table.js';

/** GraphDims of grouped-query attention over whole heads, rotate-half RoPE on all headDim values. */
export function gqaGraphDims(c: ModelConfig): GraphDims {
  const kvWidth = c.numKvHeads * c.headDim;
  return {
    hidden: c.hiddenSize,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    kvWidth,
    keyWidth: kvWidth,
    valueWidth: kvWidth,
    ropeDim: c.headDim,
    experts: c.numExperts,
    ffn: c.intermediateSize,
    vocab: c.vocabSize,
    eps: c.rmsNormEps,
  };
}

/** Reads three roles of a SwiGLU (gate w1, down w2, up w3) by their names. */
export async function readSwiGlu(
  source: TensorSource,
  names: { readonly w1: string; readonly w2: string; readonly w3: string },
): Promise<SwiGluWeights> {
  return {
    w1: await source.readF32(names.w1),
    w2: await source.readF32(names.w2),
    w3: await source.readF32(names.w3),
  };
}

/**
 * The expert graph of one routed expert in `format`. For `bf16` the weights are read as stored
 * and kept in 16 bits (an fp32 copy of them never exists); int8/int4 read and quantize one matrix
 * at a time, so only one matrix is ever widened to fp32; fp32 reads the three.
 */
export async function expertGraphOf(
  names: { readonly w1: string; readonly w2: string; readonly w3: string },
  dims: GraphDims,
  source: TensorSource,
  layer: number,
  expert: number,
  format: ExpertWeightFormat,
): Promise<Uint8Array> {
  switch (format) {
    case 'bf16': {
      const w = {
        w1: toBf16(await source.read(names.w1)),
        w2: toBf16(await source.read(names.w2)),
        w3: toBf16(await source.read(names.w3)),
      };
      return buildBf16ExpertGraph(dims, w, layer, expert);
    }
    case 'int8':
    case 'int4': {
      const quantize = format === 'int8' ? quantizeInt8Blockwise : quantizeInt4Blockwise;
      const read = async (name: string) => quantize(await source.readF32(name));
      const w = { w1: await read(names.w1), w2: await read(names.w2), w3: await read(names.w3) };
      return buildQuantizedExpertGraph(dims, { bits: format === 'int8' ? 8 : 4, ...w }, layer, expert);
    }
    case 'fp32':
      return buildExpertGraph(dims, await readSwiGlu(source, names), layer, expert);
  }
}

/** bf16 bits of a stored weight: bf16 as is, others rounded to nearest even (fp16 through fp32). */
function toBf16(t: StoredWeight): Tensor<'bfloat16'> {
  switch (t.dtype) {
    case 'bfloat16':
      return t;
    case 'float32':
      return makeTensor('bfloat16', t.shape, f32ToBf16(t.data));
    case 'float16':
      return makeTensor('bfloat16', t.shape, f32ToBf16(f16ToF32(t.data)));
  }
}

export async function familyExpertGraph<L extends LayerRole>(
  names: TensorNames<L>,
  dims: GraphDims,
  source: TensorSource,
  layer: number,
  expert: number,
  format: ExpertWeightFormat,
): Promise<Uint8Array> {
  return expertGraphOf(names.expert(layer, expert), dims, source, layer, expert, format);
}

export async function familyHeadGraphs<L extends LayerRole>(
  names: TensorNames<L>,
  dims: GraphDims,
  source: TensorSource,
): Promise<HeadGraphs> {
  const g = names.global;
  // Tied embeddings: Hugging Face leaves lm_head out of the checkpoint and reuses the embedding.
  const lmHead = source.config.tieWordEmbeddings && !source.has(g.output) ? g.tokenEmbd : g.output;
  const head = { norm: await source.readF32(g.outputNorm), lmHead: await source.readF32(lmHead) };
  return { logits: buildLogitsGraph(dims, head), nll: buildNllGraph(dims, head) };
}

export function familyEmbedding<L extends LayerRole>(
  names: TensorNames<L>,
  source: TensorSource,
): Promise<F32Tensor> {
  return source.readF32(names.global.tokenEmbd);
}

/** Graphs compute plain RoPE only; a config asking for a scaled variant is refused at graph time. */
export function requireDefaultRope(modelType: string, ropeType: string): void {
  if (ropeType !== 'default') {
    throw new FamilyFeatureError(
      `${modelType}: RoPE scaling "${ropeType}" (config.json rope_scaling / rope_parameters) is not implemented yet; ` +
        'kmoe validates and sizes this config but cannot run it',
      'rope_scaling',
    );
  }
}

/** What a softmax-routed GQA decoder family supplies; `gqaSoftmaxFamily` builds the rest. */
export interface GqaSoftmaxFamilySpec<
  C extends ModelConfig & { readonly normTopkProb: boolean; readonly ropeType: string },
  L extends LayerRole,
> {
  readonly modelType: string;
  readonly parseConfig: (raw: Readonly<Record<string, unknown>>) => C;
  readonly ownConfig: (config: ModelConfig) => C;
  readonly tensorNames: TensorNames<L>;
  readonly expectedShapes: (config: ModelConfig) => ExpectedShapes<L>;
  readonly tensorSpecs: (config: ModelConfig) => TensorSpec[];
  readonly layerWeights: (source: TensorSource, layer: number) => Promise<DecoderLayerWeights>;
  /** Always-computed experts of each MoE layer (run inside the layer graph). */
  readonly sharedExperts: (config: C) => number;
  /** Per decoder layer, whether it is an MoE layer (else a dense FFN layer). */
  readonly moeLayers: (config: C) => readonly boolean[];
}

/**
 * A family whose router is a softmax over the experts, top-K renormalised only when
 * norm_topk_prob, with attention, shared expert and dense layers all in the one decoder-layer graph.
 */
export function gqaSoftmaxFamily<
  C extends ModelConfig & { readonly normTopkProb: boolean; readonly ropeType: string },
  L extends LayerRole,
>(spec: GqaSoftmaxFamilySpec<C, L>): ModelFamily<C> {
  const names = spec.tensorNames;
  return {
    modelType: spec.modelType,
    parseConfig: spec.parseConfig,
    ownConfig: spec.ownConfig,
    layerPlan(config): LayerPlan {
      const c = spec.ownConfig(config);
      const moe: MoeLayerPlan = {
        kind: 'moe',
        numExperts: c.numExperts,
        nativeK: c.numExpertsPerTok,
        gate: 'softmax',
        renormalize: c.normTopkProb,
        sharedExperts: spec.sharedExperts(c),
        routedScalingFactor: 1,
      };
      return spec.moeLayers(c).map((isMoe) => (isMoe ? moe : { kind: 'dense' }));
    },
    graphDims: (config) => gqaGraphDims(spec.ownConfig(config)),
    tensorNames: names,
    expectedShapes: spec.expectedShapes,
    tensorSpecs: spec.tensorSpecs,
    async denseLayerGraph(source, layer) {
      const c = spec.ownConfig(source.config);
      requireDefaultRope(spec.modelType, c.ropeType);
      return buildDecoderLayerGraph(gqaGraphDims(c), await spec.layerWeights(source, layer), layer);
    },
    expertGraph: (source, layer, expert, format) =>
      familyExpertGraph(names, gqaGraphDims(source.config), source, layer, expert, format),
    headGraphs: (source) => familyHeadGraphs(names, gqaGraphDims(source.config), source),
    embedding: (source) => familyEmbedding(names, source),
  };
}
