// DeepSeek-V2/V3's row of the architecture table: Hugging Face tensor names per role (MLA
// projections and norms, router and its correction bias, shared experts, dense-layer FFN), and which
// roles each layer has for a config (dense first layers; q LoRA or a plain q projection).

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
import type { DeepseekConfig } from './config.js';

export type DeepseekLayerRole =
  | 'attnNorm'
  | 'attnQ'
  | 'attnQA'
  | 'attnQANorm'
  | 'attnQB'
  | 'attnKvA'
  | 'attnKvANorm'
  | 'attnKvB'
  | 'attnOut'
  | 'ffnNorm'
  | 'router'
  | 'routerBias'
  | 'sharedW1'
  | 'sharedW2'
  | 'sharedW3'
  | 'ffnW1'
  | 'ffnW2'
  | 'ffnW3';

const P = HF_LAYER;
const TEMPLATES: TensorNameTemplates<DeepseekLayerRole> = {
  global: HF_GLOBAL_NAMES,
  layer: {
    attnNorm: `${P}.input_layernorm.weight`,
    attnQ: `${P}.self_attn.q_proj.weight`,
    attnQA: `${P}.self_attn.q_a_proj.weight`,
    attnQANorm: `${P}.self_attn.q_a_layernorm.weight`,
    attnQB: `${P}.self_attn.q_b_proj.weight`,
    attnKvA: `${P}.self_attn.kv_a_proj_with_mqa.weight`,
    attnKvANorm: `${P}.self_attn.kv_a_layernorm.weight`,
    attnKvB: `${P}.self_attn.kv_b_proj.weight`,
    attnOut: `${P}.self_attn.o_proj.weight`,
    ffnNorm: `${P}.post_attention_layernorm.weight`,
    router: `${P}.mlp.gate.weight`,
    routerBias: `${P}.mlp.gate.e_score_correction_bias`,
    sharedW1: `${P}.mlp.shared_experts.gate_proj.weight`,
    sharedW2: `${P}.mlp.shared_experts.down_proj.weight`,
    sharedW3: `${P}.mlp.shared_experts.up_proj.weight`,
    ...HF_DENSE_FFN_NAMES,
  },
  expert: HF_EXPERT_NAMES,
};

export const deepseekTensorNames: TensorNames<DeepseekLayerRole> = tensorNamesFrom(TEMPLATES);

export function deepseekExpectedShapes(c: DeepseekConfig): ExpectedShapes<DeepseekLayerRole> {
  const h = c.hiddenSize;
  const heads = c.numHeads;
  const qk = c.qkNopeHeadDim + c.qkRopeHeadDim;
  const qLora = c.qLoraRank ?? 0;
  const shared = c.nSharedExperts * c.intermediateSize;
  const dense = c.denseIntermediateSize;
  return {
    global: hfGlobalShapes(c),
    layer: {
      attnNorm: [h],
      attnQ: [heads * qk, h],
      attnQA: [qLora, h],
      attnQANorm: [qLora],
      attnQB: [heads * qk, qLora],
      attnKvA: [c.kvLoraRank + c.qkRopeHeadDim, h],
      attnKvANorm: [c.kvLoraRank],
      attnKvB: [heads * (c.qkNopeHeadDim + c.vHeadDim), c.kvLoraRank],
      attnOut: [h, heads * c.vHeadDim],
      ffnNorm: [h],
      router: [c.numExperts, h],
      routerBias: [c.numExperts],
      sharedW1: [shared, h],
      sharedW2: [h, shared],
      sharedW3: [shared, h],
      ...hfDenseFfnShapes(h, dense),
    },
    expert: hfExpertShapes(c),
  };
}

export function deepseekLayerRoles(c: DeepseekConfig, l: number): DeepseekLayerRole[] {
  const roles: DeepseekLayerRole[] = ['attnNorm'];
  if (c.qLoraRank === null) roles.push('attnQ');
  else roles.push('attnQA', 'attnQANorm', 'attnQB');
  roles.push('attnKvA', 'attnKvANorm', 'attnKvB', 'attnOut', 'ffnNorm');
  if (!c.moeLayers[l]) {
    roles.push('ffnW1', 'ffnW2', 'ffnW3');
    return roles;
  }
  roles.push('router');
  if (c.topkMethod === 'noaux_tc') roles.push('routerBias');
  if (c.nSharedExperts > 0) roles.push('sharedW1', 'sharedW2', 'sharedW3');
  return roles;
}

export function deepseekTensorSpecs(config: ModelConfig): TensorSpec[] {
  const c = config as DeepseekConfig;
  return tensorSpecsByLayer(deepseekTensorNames, deepseekExpectedShapes(c), c, (l) => ({
    roles: deepseekLayerRoles(c, l),
    experts: c.moeLayers[l] ? c.numExperts : 0,
  }));
}
