// Mixtral's row of the architecture table: which Hugging Face tensor name plays which role, and what
// shape each role has for a given config. Nothing else in kmoe spells a Mixtral tensor name.

import type { ModelConfig } from '../family.js';
import {
  type ExpectedShapes,
  type TensorNames,
  type TensorNameTemplates,
  type TensorSpec,
  tensorNamesFrom,
  tensorSpecsFrom,
} from '../tensor-table.js';

const MIXTRAL_TENSORS: TensorNameTemplates = {
  global: {
    tokenEmbd: 'model.embed_tokens.weight',
    outputNorm: 'model.norm.weight',
    output: 'lm_head.weight',
  },
  layer: {
    attnNorm: 'model.layers.{l}.input_layernorm.weight',
    attnQ: 'model.layers.{l}.self_attn.q_proj.weight',
    attnK: 'model.layers.{l}.self_attn.k_proj.weight',
    attnV: 'model.layers.{l}.self_attn.v_proj.weight',
    attnOut: 'model.layers.{l}.self_attn.o_proj.weight',
    ffnNorm: 'model.layers.{l}.post_attention_layernorm.weight',
    router: 'model.layers.{l}.block_sparse_moe.gate.weight',
  },
  expert: {
    w1: 'model.layers.{l}.block_sparse_moe.experts.{e}.w1.weight',
    w2: 'model.layers.{l}.block_sparse_moe.experts.{e}.w2.weight',
    w3: 'model.layers.{l}.block_sparse_moe.experts.{e}.w3.weight',
  },
};

/** `mixtralTensorNames.expert(0, 3).w1`. */
export const mixtralTensorNames: TensorNames = tensorNamesFrom(MIXTRAL_TENSORS);

/**
 * Shape of every role for a config. Projections are stored as PyTorch nn.Linear weights,
 * [out_features, in_features], which is what the checkpoint holds and what the graph builder
 * must transpose for a MatMul.
 */
export function mixtralExpectedShapes(config: ModelConfig): ExpectedShapes {
  const {
    hiddenSize: h,
    intermediateSize: ffn,
    numHeads,
    numKvHeads,
    headDim,
    numExperts,
    vocabSize,
  } = config;
  return {
    global: {
      tokenEmbd: [vocabSize, h],
      outputNorm: [h],
      output: [vocabSize, h],
    },
    layer: {
      attnNorm: [h],
      attnQ: [numHeads * headDim, h],
      attnK: [numKvHeads * headDim, h],
      attnV: [numKvHeads * headDim, h],
      attnOut: [h, numHeads * headDim],
      ffnNorm: [h],
      router: [numExperts, h],
    },
    expert: {
      w1: [ffn, h],
      w2: [h, ffn],
      w3: [ffn, h],
    },
  };
}

/** Every tensor a Mixtral checkpoint holds for this config, globals first, then layer by layer. */
export function mixtralTensorSpecs(config: ModelConfig): TensorSpec[] {
  return tensorSpecsFrom(mixtralTensorNames, mixtralExpectedShapes(config), config);
}
