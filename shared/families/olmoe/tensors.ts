// OLMoE's row of the architecture table: Hugging Face tensor names per role (q/k RMSNorm weights
// over the whole projections, [heads*headDim] and [kvHeads*headDim]; no biases, no shared expert).

import type { ModelConfig } from '../family.js';
import { HF_EXPERT_NAMES, HF_GLOBAL_NAMES, HF_LAYER, hfExpertShapes, hfGlobalShapes } from '../hf-layout.js';
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

const P = HF_LAYER;
const TEMPLATES: TensorNameTemplates<OlmoeLayerRole> = {
  global: HF_GLOBAL_NAMES,
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
  expert: HF_EXPERT_NAMES,
};

export const olmoeTensorNames: TensorNames<OlmoeLayerRole> = tensorNamesFrom(TEMPLATES);

export function olmoeExpectedShapes(config: ModelConfig): ExpectedShapes<OlmoeLayerRole> {
  const c = asOlmoeConfig(config);
  const h = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  return {
    global: hfGlobalShapes(c),
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
    expert: hfExpertShapes(c),
  };
}

export function olmoeTensorSpecs(config: ModelConfig): TensorSpec[] {
  const c = asOlmoeConfig(config);
  return tensorSpecsFrom(olmoeTensorNames, olmoeExpectedShapes(c), c);
}
