// The Qwen3-MoE family (Qwen3-30B-A3B, Qwen3-235B-A22B): softmax router, top-K renormalised when
// norm_topk_prob, no shared expert, per-head q/k RMSNorm before RoPE, explicit head_dim, optional
// dense layers (mlp_only_layers, decoder_sparse_step). transformers' Qwen3MoeSparseMoeBlock.

import { gqaSoftmaxFamily } from '../common.js';
import type { ModelFamily } from '../family.js';
import { asQwen3MoeConfig, parseQwen3MoeConfig, QWEN3_MOE, type Qwen3MoeConfig } from './config.js';
import { qwen3MoeExpectedShapes, qwen3MoeTensorNames, qwen3MoeTensorSpecs } from './tensors.js';
import { qwen3MoeLayerWeights } from './weights.js';

export const qwen3MoeFamily: ModelFamily<Qwen3MoeConfig> = gqaSoftmaxFamily({
  modelType: QWEN3_MOE,
  parseConfig: parseQwen3MoeConfig,
  ownConfig: asQwen3MoeConfig,
  tensorNames: qwen3MoeTensorNames,
  expectedShapes: qwen3MoeExpectedShapes,
  tensorSpecs: qwen3MoeTensorSpecs,
  layerWeights: qwen3MoeLayerWeights,
  sharedExperts: () => 0,
  moeLayers: (c) => c.moeLayers,
});
