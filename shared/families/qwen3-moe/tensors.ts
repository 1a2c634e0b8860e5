// Qwen3-MoE's row of the architecture table: Hugging Face tensor names per role (per-head q/k
// RMSNorm weights [headDim]; no biases, no shared expert), and which roles each layer has.

import type { ModelConfig } from '../family.js';
import {
  HF_DENSE_FFN_NAMES,
  HF_EXPERT_NAMES,
  HF_GLOBAL_NAMES,
  HF_LAYER,
  hfDenseFfnShapes,
  hfExpertShapes,
  hfGlobalShapes,
} from '../hf-layout.js';
import {
  type ExpectedShapes,
  type TensorNames,
  type TensorNameTemplates,
  type TensorSpec,
  tensorNamesFrom,
  tensorSpecsByLayer,
} from '../tensor-table.js';
import { asQwen3MoeConfig } from './config.js';

export type Qwen3MoeLayerRole =
  | 'attnNorm'
  | 'attnQ'
  | 'attnK'
  | 'attnV'
  | 'attnQNorm'
  | 'attnKNorm'
  | 'attnOut'
  | 'ffnNorm'
  | 'router'
  | 'ffnW1'
  | 'ffnW2'
  | 'ffnW3';

const P = HF_LAYER;
const TEMPLATES: TensorNameTemplates<Qwen3MoeLayerRole> = {
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
    ...HF_DENSE_FFN_NAMES,
  },
  expert: HF_EXPERT_NAMES,
};

export const qwen3MoeTensorNames: TensorNames<Qwen3MoeLayerRole> = tensorNamesFrom(TEMPLATES);

export function qwen3MoeExpectedShapes(config: ModelConfig): ExpectedShapes<Qwen3MoeLayerRole> {
  const c = asQwen3MoeConfig(config);
  const h = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const dense = c.denseIntermediateSize;
  return {
    global: hfGlobalShapes(c),
    layer: {
      attnNorm: [h],
      attnQ: [q, h],
      attnK: [kv, h],
      attnV: [kv, h],
      attnQNorm: [c.headDim],
      attnKNorm: [c.headDim],
      attnOut: [h, q],
      ffnNorm: [h],
      router: [c.numExperts, h],
      ...hfDenseFfnShapes(h, dense),
    },
    expert: hfExpertShapes(c),
  };
}

export function qwen3MoeLayerRoles(config: ModelConfig, l: number): Qwen3MoeLayerRole[] {
  const c = asQwen3MoeConfig(config);
  const roles: Qwen3MoeLayerRole[] = [
    'attnNorm',
    'attnQ',
    'attnK',
    'attnV',
    'attnQNorm',
    'attnKNorm',
    'attnOut',
    'ffnNorm',
  ];
  if (c.moeLayers[l]) roles.push('router');
  else roles.push('ffnW1', 'ffnW2', 'ffnW3');
  return roles;
}

export function qwen3MoeTensorSpecs(config: ModelConfig): TensorSpec[] {
  const c = asQwen3MoeConfig(config);
  return tensorSpecsByLayer(qwen3MoeTensorNames, qwen3MoeExpectedShapes(c), c, (l) => ({
    roles: qwen3MoeLayerRoles(c, l),
    experts: c.moeLayers[l] ? c.numExperts : 0,
  }));
}
