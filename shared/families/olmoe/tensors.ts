// OLMoE's row of the architecture table: Hugging Face tensor names per role (q/k RMSNorm weights
// over the whole projections, [heads*headDim] and [kvHeads*headDim]; no biases, no shared expert).

import type { ModelConfig } from '../family.js';
import {
  type ExpectedShapes,
  type TensorNames,
  type TensorNameTemplates,
  type TensorSpec,
  tensorNamesFrom,
  tensorSpecsFrom,
} from '../tensor-table.js';
import { asOlmoeConfig } from './config.js';

export type OlmoeLayerRole =
  | 'attnNorm'
  | 'attnQ'
  | 'attnK'
  | 'attnV'
  | 'attnQNorm'
  | 'attnKNorm'
  | 'attnOut'
  | 'ffnNorm'
  | 'router';

const P = 'model.layers.{l}';
const TEMPLATES: TensorNameTemplates<OlmoeLayerRole> = {
  global: {
    tokenEmbd: 'model.embed_tokens.weight',
    outputNorm: 'model.norm.weight',
    output: 'lm_head.weight',
  },
  layer: {
    attnNorm: `${P}.input_layernorm.weight`,
    attnQ: `${P}.self_attn.q_proj.weight`,
    attnK: `${P}.self_attn.k_proj.weight`,
    attnV: `${P}.self_attn.v_proj.weight`,
    attnQNorm: `${P}.self_attn.q_norm.weight`,
    attnKNorm: `${P}.self_attn.k_norm.weight`,
    attnOut: `${P}.self_attn.o_proj.weight`,
    ffnNorm: `${P}.post_attention_layernorm.weight`,
    router: `${P}.mlp.gate.weight`,
  },
  expert: {
    w1: `${P}.mlp.experts.{e}.gate_proj.weight`,
    w2: `${P}.mlp.experts.{e}.down_proj.weight`,
    w3: `${P}.mlp.experts.{e}.up_proj.weight`,
  },
};

export const olmoeTensorNames: TensorNames<OlmoeLayerRole> = tensorNamesFrom(TEMPLATES);

export function olmoeExpectedShapes(config: ModelConfig): ExpectedShapes<OlmoeLayerRole> {
  const c = asOlmoeConfig(config);
  const h = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  return {
    global: { tokenEmbd: [c.vocabSize, h], outputNorm: [h], output: [c.vocabSize, h] },
    layer: {
      attnNorm: [h],
      attnQ: [q, h],
      attnK: [kv, h],
      attnV: [kv, h],
      attnQNorm: [q],
      attnKNorm: [kv],
      attnOut: [h, q],
      ffnNorm: [h],
      router: [c.numExperts, h],
    },
    expert: { w1: [c.intermediateSize, h], w2: [h, c.intermediateSize], w3: [c.intermediateSize, h] },
  };
}

export function olmoeTensorSpecs(config: ModelConfig): TensorSpec[] {
  const c = asOlmoeConfig(config);
  return tensorSpecsFrom(olmoeTensorNames, olmoeExpectedShapes(c), c);
}
