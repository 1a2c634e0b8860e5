// Qwen2-MoE's row of the architecture table: Hugging Face tensor names per role, and which roles
// each layer has (MoE layers: router, routed experts, shared expert and its gate; dense layers: FFN).

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
import { asQwen2MoeConfig } from './config.js';

export type Qwen2MoeLayerRole =
  | 'attnNorm'
  | 'attnQ'
  | 'attnK'
  | 'attnV'
  | 'attnQBias'
  | 'attnKBias'
  | 'attnVBias'
  | 'attnOut'
  | 'ffnNorm'
  | 'router'
  | 'sharedW1'
  | 'sharedW2'
  | 'sharedW3'
  | 'sharedGate'
  | 'ffnW1'
  | 'ffnW2'
  | 'ffnW3';

const P = HF_LAYER;
const TEMPLATES: TensorNameTemplates<Qwen2MoeLayerRole> = {
  global: HF_GLOBAL_NAMES,
  layer: {
    attnNorm: `${P}.input_layernorm.weight`,
    attnQ: `${P}.self_attn.q_proj.weight`,
    attnK: `${P}.self_attn.k_proj.weight`,
    attnV: `${P}.self_attn.v_proj.weight`,
    attnQBias: `${P}.self_attn.q_proj.bias`,
    attnKBias: `${P}.self_attn.k_proj.bias`,
    attnVBias: `${P}.self_attn.v_proj.bias`,
    attnOut: `${P}.self_attn.o_proj.weight`,
    ffnNorm: `${P}.post_attention_layernorm.weight`,
    router: `${P}.mlp.gate.weight`,
    sharedW1: `${P}.mlp.shared_expert.gate_proj.weight`,
    sharedW2: `${P}.mlp.shared_expert.down_proj.weight`,
    sharedW3: `${P}.mlp.shared_expert.up_proj.weight`,
    sharedGate: `${P}.mlp.shared_expert_gate.weight`,
    ...HF_DENSE_FFN_NAMES,
  },
  expert: HF_EXPERT_NAMES,
};

export const qwen2MoeTensorNames: TensorNames<Qwen2MoeLayerRole> = tensorNamesFrom(TEMPLATES);

export function qwen2MoeExpectedShapes(config: ModelConfig): ExpectedShapes<Qwen2MoeLayerRole> {
  const c = asQwen2MoeConfig(config);
  const h = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const shared = c.sharedExpertIntermediateSize;
  const dense = c.denseIntermediateSize;
  return {
    global: hfGlobalShapes(c),
    layer: {
      attnNorm: [h],
      attnQ: [q, h],
      attnK: [kv, h],
      attnV: [kv, h],
      attnQBias: [q],
      attnKBias: [kv],
      attnVBias: [kv],
      attnOut: [h, q],
      ffnNorm: [h],
      router: [c.numExperts, h],
      sharedW1: [shared, h],
      sharedW2: [h, shared],
      sharedW3: [shared, h],
      sharedGate: [1, h],
      ...hfDenseFfnShapes(h, dense),
    },
    expert: hfExpertShapes(c),
  };
}

/** The roles layer `l` has for this config. */
export function qwen2MoeLayerRoles(config: ModelConfig, l: number): Qwen2MoeLayerRole[] {
  const c = asQwen2MoeConfig(config);
  const roles: Qwen2MoeLayerRole[] = ['attnNorm', 'attnQ', 'attnK', 'attnV'];
  if (c.qkvBias) roles.push('attnQBias', 'attnKBias', 'attnVBias');
  roles.push('attnOut', 'ffnNorm');
  if (!c.moeLayers[l]) roles.push('ffnW1', 'ffnW2', 'ffnW3');
  else {
    roles.push('router');
    if (c.sharedExpertIntermediateSize > 0) roles.push('sharedW1', 'sharedW2', 'sharedW3', 'sharedGate');
  }
  return roles;
}

export function qwen2MoeTensorSpecs(config: ModelConfig): TensorSpec[] {
  const c = asQwen2MoeConfig(config);
  return tensorSpecsByLayer(qwen2MoeTensorNames, qwen2MoeExpectedShapes(c), c, (l) => ({
    roles: qwen2MoeLayerRoles(c, l),
    experts: c.moeLayers[l] ? c.numExperts : 0,
  }));
}
