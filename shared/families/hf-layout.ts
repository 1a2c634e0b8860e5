// The Hugging Face tensor names and shapes the Llama-style MoE families share (Qwen2-MoE, Qwen3-MoE,
// OLMoE, DeepSeek): embedding, final norm, LM head, the dense-layer FFN and the routed experts. Each
// family's table spells only the layer roles that differ.

import type { ModelConfig } from './family.js';
import type { ExpertRole, GlobalRole } from './tensor-table.js';

/** `{l}` is filled with the layer index by tensorNamesFrom. */
export const HF_LAYER = 'model.layers.{l}';

export const HF_GLOBAL_NAMES: Readonly<Record<GlobalRole, string>> = {
  tokenEmbd: 'model.embed_tokens.weight',
  outputNorm: 'model.norm.weight',
  output: 'lm_head.weight',
};

export const HF_EXPERT_NAMES: Readonly<Record<ExpertRole, string>> = {
  w1: `${HF_LAYER}.mlp.experts.{e}.gate_proj.weight`,
  w2: `${HF_LAYER}.mlp.experts.{e}.down_proj.weight`,
  w3: `${HF_LAYER}.mlp.experts.{e}.up_proj.weight`,
};

/** The SwiGLU FFN of a dense (non-MoE) layer. */
export const HF_DENSE_FFN_NAMES = {
  ffnW1: `${HF_LAYER}.mlp.gate_proj.weight`,
  ffnW2: `${HF_LAYER}.mlp.down_proj.weight`,
  ffnW3: `${HF_LAYER}.mlp.up_proj.weight`,
} as const;

export function hfGlobalShapes(c: ModelConfig): Readonly<Record<GlobalRole, readonly number[]>> {
  const h = c.hiddenSize;
  return { tokenEmbd: [c.vocabSize, h], outputNorm: [h], output: [c.vocabSize, h] };
}

/** Routed experts: w1 gate and w3 up [intermediateSize, hidden], w2 down [hidden, intermediateSize]. */
export function hfExpertShapes(c: ModelConfig): Readonly<Record<ExpertRole, readonly number[]>> {
  const h = c.hiddenSize;
  return { w1: [c.intermediateSize, h], w2: [h, c.intermediateSize], w3: [c.intermediateSize, h] };
}

/** Shapes of HF_DENSE_FFN_NAMES for an FFN of size `dense`. */
export function hfDenseFfnShapes(
  hidden: number,
  dense: number,
): Readonly<Record<keyof typeof HF_DENSE_FFN_NAMES, readonly number[]>> {
  return { ffnW1: [dense, hidden], ffnW2: [hidden, dense], ffnW3: [dense, hidden] };
}
