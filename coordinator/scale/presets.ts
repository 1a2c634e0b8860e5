// The config.json of each real model `kmoe synth --like` imitates, field for field as published
// on the Hugging Face Hub (mistralai/Mixtral-8x22B-v0.1, mistralai/Mixtral-8x7B-v0.1), so that a
// synthetic checkpoint differs from the real one only in num_hidden_layers and the weights; and
// one mid-size shape that no published model has (mixtral-mid, below).

export const SYNTH_PRESETS = ['mixtral-8x22b', 'mixtral-8x7b', 'mixtral-mid'] as const;
export type SynthPreset = (typeof SYNTH_PRESETS)[number];

export function isSynthPreset(value: string): value is SynthPreset {
  return (SYNTH_PRESETS as readonly string[]).includes(value);
}

/** A Hugging Face config.json as a JSON object. */
export type HfConfigJson = Readonly<Record<string, unknown>>;

const MIXTRAL_8X22B: HfConfigJson = {
  architectures: ['MixtralForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 6144,
  initializer_range: 0.02,
  intermediate_size: 16384,
  max_position_embeddings: 65536,
  model_type: 'mixtral',
  num_attention_heads: 48,
  num_experts_per_tok: 2,
  num_hidden_layers: 56,
  num_key_value_heads: 8,
  num_local_experts: 8,
  output_router_logits: false,
  rms_norm_eps: 1e-5,
  rope_theta: 1e6,
  router_aux_loss_coef: 0.001,
  sliding_window: null,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.38.0',
  use_cache: true,
  vocab_size: 32768,
};

const MIXTRAL_8X7B: HfConfigJson = {
  architectures: ['MixtralForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: 'mixtral',
  num_attention_heads: 32,
  num_experts_per_tok: 2,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  num_local_experts: 8,
  output_router_logits: false,
  rms_norm_eps: 1e-5,
  rope_theta: 1e6,
  router_aux_loss_coef: 0.02,
  sliding_window: null,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.36.0',
  use_cache: true,
  vocab_size: 32000,
};

// Not a published model: Mixtral 8x7B at a quarter of its width (hidden 1024, FFN 3584, 8 heads of
// 128 with 2 KV heads, the same 4:1 grouping), for speed comparisons where an expert call (42 MiB
// of fp32 weights) costs far more than a call's overhead but a few layers still fit in memory twice
// (kmoe's fp32 and llama.cpp's GGUF side by side).
const MIXTRAL_MID: HfConfigJson = {
  ...MIXTRAL_8X7B,
  hidden_size: 1024,
  intermediate_size: 3584,
  num_attention_heads: 8,
  num_key_value_heads: 2,
};

const PRESETS: Readonly<Record<SynthPreset, HfConfigJson>> = {
  'mixtral-8x22b': MIXTRAL_8X22B,
  'mixtral-8x7b': MIXTRAL_8X7B,
  'mixtral-mid': MIXTRAL_MID,
};

/** The preset's config.json, with `num_hidden_layers` replaced when `layers` is given. */
export function presetConfig(preset: SynthPreset, layers?: number): HfConfigJson {
  const base = PRESETS[preset];
  return layers === undefined ? { ...base } : { ...base, num_hidden_layers: layers };
}
