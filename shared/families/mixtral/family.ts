// The Mixtral family: every decoder layer is an MoE layer of softmax-gated SwiGLU experts with
// top-K renormalised routing and no shared experts (transformers' MixtralSparseMoeBlock).

import { expertGraphOf } from '../common.js';
import type { ModelFamily } from '../family.js';
import type { LayerPlan, MoeLayerPlan } from '../layer-plan.js';
import { asMixtralConfig, MIXTRAL, type MixtralConfig, parseMixtralConfig } from './config.js';
import { buildDenseLayerGraph, buildLogitsGraph, buildNllGraph, mixtralGraphDims } from './graphs.js';
import { mixtralExpectedShapes, mixtralTensorNames, mixtralTensorSpecs } from './tensors.js';
import { denseLayerWeights, embeddingWeights, headWeights } from './weights.js';

export const mixtralFamily: ModelFamily<MixtralConfig> = {
  modelType: MIXTRAL,
  parseConfig: parseMixtralConfig,
  ownConfig: asMixtralConfig,
  layerPlan(config): LayerPlan {
    const c = asMixtralConfig(config);
    const moe: MoeLayerPlan = {
      kind: 'moe',
      numExperts: c.numExperts,
      nativeK: c.numExpertsPerTok,
      gate: 'softmax',
      renormalize: true,
      sharedExperts: 0,
      routedScalingFactor: 1,
    };
    return Array.from({ length: c.numLayers }, () => moe);
  },
  graphDims: (config) => mixtralGraphDims(asMixtralConfig(config)),
  tensorNames: mixtralTensorNames,
  expectedShapes: (config) => mixtralExpectedShapes(asMixtralConfig(config)),
  tensorSpecs: (config) => mixtralTensorSpecs(asMixtralConfig(config)),
  async denseLayerGraph(source, layer) {
    const dims = mixtralGraphDims(asMixtralConfig(source.config));
    return buildDenseLayerGraph(dims, await denseLayerWeights(source, layer), layer);
  },
  async expertGraph(source, layer, expert, format) {
    const dims = mixtralGraphDims(asMixtralConfig(source.config));
    return expertGraphOf(mixtralTensorNames.expert(layer, expert), dims, source, layer, expert, format);
  },
  async headGraphs(source) {
    const dims = mixtralGraphDims(asMixtralConfig(source.config));
    const head = await headWeights(source);
    return { logits: buildLogitsGraph(dims, head), nll: buildNllGraph(dims, head) };
  },
  embedding: embeddingWeights,
};
