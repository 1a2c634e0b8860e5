// The OLMoE family (OLMoE-1B-7B): softmax router, top-K kept as they are unless norm_topk_prob, no
// shared expert, RMSNorm over the whole q and k projections before RoPE, optional qkv clipping.
// transformers' OlmoeSparseMoeBlock.

import {
  familyEmbedding,
  familyExpertGraph,
  familyHeadGraphs,
  gqaGraphDims,
  requireDefaultRope,
} from '../common.js';
import { buildDecoderLayerGraph } from '../decoder-graph.js';
import type { ModelFamily } from '../family.js';
import type { LayerPlan, MoeLayerPlan } from '../layer-plan.js';
import { asOlmoeConfig, OLMOE, type OlmoeConfig, parseOlmoeConfig } from './config.js';
import { olmoeExpectedShapes, olmoeTensorNames, olmoeTensorSpecs } from './tensors.js';
import { olmoeLayerWeights } from './weights.js';

export const olmoeFamily: ModelFamily<OlmoeConfig> = {
  modelType: OLMOE,
  parseConfig: parseOlmoeConfig,
  ownConfig: asOlmoeConfig,
  layerPlan(config): LayerPlan {
    const c = asOlmoeConfig(config);
    const moe: MoeLayerPlan = {
      kind: 'moe',
      numExperts: c.numExperts,
      nativeK: c.numExpertsPerTok,
      gate: 'softmax',
      renormalize: c.normTopkProb,
      sharedExperts: 0,
      routedScalingFactor: 1,
    };
    return Array.from({ length: c.numLayers }, () => moe);
  },
  graphDims: (config) => gqaGraphDims(asOlmoeConfig(config)),
  tensorNames: olmoeTensorNames,
  expectedShapes: olmoeExpectedShapes,
  tensorSpecs: olmoeTensorSpecs,
  async denseLayerGraph(source, layer) {
    const c = asOlmoeConfig(source.config);
    requireDefaultRope(OLMOE, c.ropeType);
    return buildDecoderLayerGraph(gqaGraphDims(c), await olmoeLayerWeights(source, layer), layer);
  },
  expertGraph: (source, layer, expert, format) =>
    familyExpertGraph(olmoeTensorNames, gqaGraphDims(source.config), source, layer, expert, format),
  headGraphs: (source) => familyHeadGraphs(olmoeTensorNames, gqaGraphDims(source.config), source),
  embedding: (source) => familyEmbedding(olmoeTensorNames, source),
};
