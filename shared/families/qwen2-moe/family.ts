// The Qwen2-MoE family (Qwen1.5-MoE, Qwen2-57B-A14B): softmax router, top-K kept as they are unless
// norm_topk_prob, a shared expert scaled by a per-token sigmoid gate, q/k/v biases, optional dense
// layers (mlp_only_layers, decoder_sparse_step). transformers' Qwen2MoeSparseMoeBlock.

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
import { asQwen2MoeConfig, parseQwen2MoeConfig, QWEN2_MOE, type Qwen2MoeConfig } from './config.js';
import { qwen2MoeExpectedShapes, qwen2MoeTensorNames, qwen2MoeTensorSpecs } from './tensors.js';
import { qwen2MoeLayerWeights } from './weights.js';

export const qwen2MoeFamily: ModelFamily<Qwen2MoeConfig> = {
  modelType: QWEN2_MOE,
  parseConfig: parseQwen2MoeConfig,
  ownConfig: asQwen2MoeConfig,
  layerPlan(config): LayerPlan {
    const c = asQwen2MoeConfig(config);
    const moe: MoeLayerPlan = {
      kind: 'moe',
      numExperts: c.numExperts,
      nativeK: c.numExpertsPerTok,
      gate: 'softmax',
      renormalize: c.normTopkProb,
      sharedExperts: c.sharedExpertIntermediateSize > 0 ? 1 : 0,
      routedScalingFactor: 1,
    };
    return c.moeLayers.map((isMoe) => (isMoe ? moe : { kind: 'dense' }));
  },
  graphDims: (config) => gqaGraphDims(asQwen2MoeConfig(config)),
  tensorNames: qwen2MoeTensorNames,
  expectedShapes: qwen2MoeExpectedShapes,
  tensorSpecs: qwen2MoeTensorSpecs,
  async denseLayerGraph(source, layer) {
    const c = asQwen2MoeConfig(source.config);
    requireDefaultRope(QWEN2_MOE, c.ropeType);
    return buildDecoderLayerGraph(gqaGraphDims(c), await qwen2MoeLayerWeights(source, layer), layer);
  },
  expertGraph: (source, layer, expert, format) =>
    familyExpertGraph(qwen2MoeTensorNames, gqaGraphDims(source.config), source, layer, expert, format),
  headGraphs: (source) => familyHeadGraphs(qwen2MoeTensorNames, gqaGraphDims(source.config), source),
  embedding: (source) => familyEmbedding(qwen2MoeTensorNames, source),
};
