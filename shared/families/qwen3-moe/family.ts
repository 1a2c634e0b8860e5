// The Qwen3-MoE family (Qwen3-30B-A3B, Qwen3-235B-A22B): softmax router, top-K renormalised when
// norm_topk_prob, no shared expert, per-head q/k RMSNorm before RoPE, explicit head_dim, optional
// dense layers (mlp_only_layers, decoder_sparse_step). transformers' Qwen3MoeSparseMoeBlock.

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
import { asQwen3MoeConfig, parseQwen3MoeConfig, QWEN3_MOE, type Qwen3MoeConfig } from './config.js';
import { qwen3MoeExpectedShapes, qwen3MoeTensorNames, qwen3MoeTensorSpecs } from './tensors.js';
import { qwen3MoeLayerWeights } from './weights.js';

export const qwen3MoeFamily: ModelFamily<Qwen3MoeConfig> = {
  modelType: QWEN3_MOE,
  parseConfig: parseQwen3MoeConfig,
  ownConfig: asQwen3MoeConfig,
  layerPlan(config): LayerPlan {
    const c = asQwen3MoeConfig(config);
    const moe: MoeLayerPlan = {
      kind: 'moe',
      numExperts: c.numExperts,
      nativeK: c.numExpertsPerTok,
      gate: 'softmax',
      renormalize: c.normTopkProb,
      sharedExperts: 0,
      routedScalingFactor: 1,
    };
    return c.moeLayers.map((isMoe) => (isMoe ? moe : { kind: 'dense' }));
  },
  graphDims: (config) => gqaGraphDims(asQwen3MoeConfig(config)),
  tensorNames: qwen3MoeTensorNames,
  expectedShapes: qwen3MoeExpectedShapes,
  tensorSpecs: qwen3MoeTensorSpecs,
  async denseLayerGraph(source, layer) {
    const c = asQwen3MoeConfig(source.config);
    requireDefaultRope(QWEN3_MOE, c.ropeType);
    return buildDecoderLayerGraph(gqaGraphDims(c), await qwen3MoeLayerWeights(source, layer), layer);
  },
  expertGraph: (source, layer, expert, format) =>
    familyExpertGraph(qwen3MoeTensorNames, gqaGraphDims(source.config), source, layer, expert, format),
  headGraphs: (source) => familyHeadGraphs(qwen3MoeTensorNames, gqaGraphDims(source.config), source),
  embedding: (source) => familyEmbedding(qwen3MoeTensorNames, source),
};
