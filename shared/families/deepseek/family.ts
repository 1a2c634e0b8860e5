// The DeepSeek families: deepseek_v3 (DeepSeek-V3/R1: sigmoid router with a selection-score
// correction bias, group-limited top-K on groups scored by their two best, renormalised and scaled by
// routed_scaling_factor) and deepseek_v2 (V2 / V2-Lite: softmax router, greedy or group-limited
// top-K). Both: multi-head latent attention, first_k_dense_replace dense layers, shared experts
// computed in the layer graph. transformers' DeepseekV3MoE / DeepseekV2Moe.

import { familyEmbedding, familyExpertGraph, familyHeadGraphs, requireDefaultRope } from '../common.js';
import { buildDecoderLayerGraph } from '../decoder-graph.js';
import { FamilyConfigError } from '../errors.js';
import type { GraphDims, ModelConfig, ModelFamily } from '../family.js';
import type { LayerPlan, MoeLayerPlan } from '../layer-plan.js';
import {
  asDeepseekConfig,
  DEEPSEEK_V2,
  DEEPSEEK_V3,
  type DeepseekConfig,
  type DeepseekModelType,
  parseDeepseekConfig,
} from './config.js';
import { deepseekExpectedShapes, deepseekTensorNames, deepseekTensorSpecs } from './tensors.js';
import { deepseekLayerWeights } from './weights.js';

/** MLA graph dimensions: cached keys are heads x (nope + rope), values heads x v; RoPE on rope dims. */
export function deepseekGraphDims(c: DeepseekConfig): GraphDims {
  const qk = c.qkNopeHeadDim + c.qkRopeHeadDim;
  const keyWidth = c.numHeads * qk;
  return {
    hidden: c.hiddenSize,
    heads: c.numHeads,
    kvHeads: c.numHeads,
    headDim: qk,
    kvWidth: keyWidth,
    keyWidth,
    valueWidth: c.numHeads * c.vHeadDim,
    ropeDim: c.qkRopeHeadDim,
    experts: c.numExperts,
    ffn: c.intermediateSize,
    vocab: c.vocabSize,
    eps: c.rmsNormEps,
  };
}

export function deepseekLayerPlan(c: DeepseekConfig): LayerPlan {
  const grouped = c.topkMethod !== 'greedy' && c.nGroup > 1;
  const moe: MoeLayerPlan = {
    kind: 'moe',
    numExperts: c.numExperts,
    nativeK: c.numExpertsPerTok,
    gate: c.scoringFunc,
    renormalize: c.normTopkProb && c.numExpertsPerTok > 1,
    sharedExperts: c.nSharedExperts,
    routedScalingFactor: c.routedScalingFactor,
    ...(c.topkMethod === 'noaux_tc' ? { selectionBias: true } : {}),
    ...(grouped ? { groups: { numGroups: c.nGroup, topKGroups: c.topkGroup } } : {}),
  };
  return c.moeLayers.map((isMoe) => (isMoe ? moe : { kind: 'dense' }));
}

function deepseekFamily(modelType: DeepseekModelType): ModelFamily<DeepseekConfig> {
  const own = (config: ModelConfig): DeepseekConfig => asDeepseekConfig(config, modelType);
  return {
    modelType,
    parseConfig(raw) {
      const c = parseDeepseekConfig(raw);
      if (c.modelType !== modelType) {
        throw new FamilyConfigError(`expected model_type "${modelType}", got "${c.modelType}"`, 'model_type');
      }
      return c;
    },
    ownConfig: own,
    layerPlan: (config) => deepseekLayerPlan(own(config)),
    graphDims: (config) => deepseekGraphDims(own(config)),
    tensorNames: deepseekTensorNames,
    expectedShapes: (config) => deepseekExpectedShapes(own(config)),
    tensorSpecs: (config) => deepseekTensorSpecs(own(config)),
    async denseLayerGraph(source, layer) {
      const c = own(source.config);
      requireDefaultRope(modelType, c.ropeType);
      return buildDecoderLayerGraph(
        deepseekGraphDims(c),
        await deepseekLayerWeights(c, source, layer),
        layer,
      );
    },
    expertGraph: (source, layer, expert, format) =>
      familyExpertGraph(
        deepseekTensorNames,
        deepseekGraphDims(own(source.config)),
        source,
        layer,
        expert,
        format,
      ),
    headGraphs: (source) =>
      familyHeadGraphs(deepseekTensorNames, deepseekGraphDims(own(source.config)), source),
    embedding: (source) => familyEmbedding(deepseekTensorNames, source),
  };
}

export const deepseekV3Family = deepseekFamily(DEEPSEEK_V3);
export const deepseekV2Family = deepseekFamily(DEEPSEEK_V2);
