// The Qwen2-MoE family (Qwen1.5-MoE, Qwen2-57B-A14B): softmax router, top-K kept as they are unless
// norm_topk_prob, a shared expert scaled by a per-token sigmoid gate, q/k/v biases, optional dense
// layers (mlp_only_layers, decoder_sparse_step). transformers' Qwen2MoeSparseMoeBlock.

import { gqaSoftmaxFamily } from '../common.js';
import type { ModelFamily } from '../family.js';
import { asQwen2MoeConfig, parseQwen2MoeConfig, QWEN2_MOE, type Qwen2MoeConfig } from './config.js';
import { qwen2MoeExpectedShapes, qwen2MoeTensorNames, qwen2MoeTensorSpecs } from './tensors.js';
import { qwen2MoeLayerWeights } from './weights.js';

export const qwen2MoeFamily: ModelFamily<Qwen2MoeConfig> = gqaSoftmaxFamily({
  modelType: QWEN2_MOE,
  parseConfig: parseQwen2MoeConfig,
  ownConfig: asQwen2MoeConfig,
  tensorNames: qwen2MoeTensorNames,
  expectedShapes: qwen2MoeExpectedShapes,
  tensorSpecs: qwen2MoeTensorSpecs,
  layerWeights: qwen2MoeLayerWeights,
  sharedExperts: (c) => (c.sharedExpertIntermediateSize > 0 ? 1 : 0),
  moeLayers: (c) => c.moeLayers,
});
