// The OLMoE family (OLMoE-1B-7B): softmax router, top-K kept as they are unless norm_topk_prob, no
// shared expert, RMSNorm over the whole q and k projections before RoPE, optional qkv clipping.
// transformers' OlmoeSparseMoeBlock.

import { gqaSoftmaxFamily } from '../common.js';
import type { ModelFamily } from '../family.js';
import { asOlmoeConfig, OLMOE, type OlmoeConfig, parseOlmoeConfig } from './config.js';
import { olmoeExpectedShapes, olmoeTensorNames, olmoeTensorSpecs } from './tensors.js';
import { olmoeLayerWeights } from './weights.js';

export const olmoeFamily: ModelFamily<OlmoeConfig> = gqaSoftmaxFamily({
  modelType: OLMOE,
  parseConfig: parseOlmoeConfig,
  ownConfig: asOlmoeConfig,
  tensorNames: olmoeTensorNames,
  expectedShapes: olmoeExpectedShapes,
  tensorSpecs: olmoeTensorSpecs,
  layerWeights: olmoeLayerWeights,
  sharedExperts: () => 0,
  moeLayers: (c) => Array.from({ length: c.numLayers }, () => true),
});
