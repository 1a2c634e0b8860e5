// The one table of architecture knowledge: which Hugging Face tensor name plays which role in
// each supported model family, and what shape each role has for a given config. Nothing else in
// kmoe spells a tensor name (the same idea as llama.cpp's llama-arch.cpp).

import type { ModelConfig } from './config.js';

/** Model families kmoe can load, by their config.json `model_type`. */
export const SUPPORTED_MODEL_TYPES = ['mixtral'] as const;
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

export function isSupportedModelType(value: string): value is ModelType {
  return (SUPPORTED_MODEL_TYPES as readonly string[]).includes(value);
}

/** Tensors that exist once per model. `output` is the LM head. */
export type GlobalRole = 'tokenEmbd' | 'outputNorm' | 'output';
/** Tensors that exist once per decoder layer. `router` is the MoE gate (logits over experts). */
export type LayerRole = 'attnNorm' | 'attnQ' | 'attnK' | 'attnV' | 'attnOut' | 'ffnNorm' | 'router';
/**
 * Tensors that exist once per expert, named after Mixtral's SwiGLU: w1 = gate projection,
 * w2 = down projection, w3 = up projection. Families that spell them gate_proj / down_proj /
 * up_proj map onto the same roles so the graph code never cares which family it runs.
 */
export type ExpertRole = 'w1' | 'w2' | 'w3';

export type TensorRole = GlobalRole | LayerRole | ExpertRole;

/** Name templates: `{l}` is the layer index, `{e}` the expert index. */
interface ArchitectureRow {
  readonly global: Readonly<Record<GlobalRole, string>>;
  readonly layer: Readonly<Record<LayerRole, string>>;
  readonly expert: Readonly<Record<ExpertRole, string>>;
}

// Adding qwen2_moe or olmoe means adding a row here (plus any new roles they need, such as
// qwen2_moe's shared expert or q/k/v biases) and a config parser in config.ts.
const ARCHITECTURES: Readonly<Record<ModelType, ArchitectureRow>> = {
  mixtral: {
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
  },
};

export interface TensorNames {
  readonly global: Readonly<Record<GlobalRole, string>>;
  layer(l: number): Readonly<Record<LayerRole, string>>;
  expert(l: number, e: number): Readonly<Record<ExpertRole, string>>;
}

/** Tensor names for one model family; `tensorNames('mixtral').expert(0, 3).w1`. */
export function tensorNames(modelType: ModelType): TensorNames {
  const row = ARCHITECTURES[modelType];
  return {
    global: row.global,
    layer: (l) => fill(row.layer, { l: checkIndex('layer', l) }),
    expert: (l, e) => fill(row.expert, { l: checkIndex('layer', l), e: checkIndex('expert', e) }),
  };
}

export interface ExpectedShapes {
  readonly global: Readonly<Record<GlobalRole, readonly number[]>>;
  readonly layer: Readonly<Record<LayerRole, readonly number[]>>;
  readonly expert: Readonly<Record<ExpertRole, readonly number[]>>;
}

/**
 * Shape of every role for a config. Projections are stored as PyTorch nn.Linear weights,
 * [out_features, in_features], which is what the checkpoint holds and what the graph builder
 * must transpose for a MatMul.
 */
export function expectedShapes(config: ModelConfig): ExpectedShapes {
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

export interface TensorSpec {
  readonly name: string;
  readonly role: TensorRole;
  readonly shape: readonly number[];
  /**
   * False only for the LM head of a model with tied embeddings: Hugging Face omits it from the
   * checkpoint then, but when it is present its shape must still be right.
   */
  readonly required: boolean;
  readonly layer?: number;
  readonly expert?: number;
}

/** Every tensor the architecture defines for this config, globals first, then layer by layer. */
export function tensorSpecs(config: ModelConfig): TensorSpec[] {
  const names = tensorNames(config.modelType);
  const shapes = expectedShapes(config);
  const specs: TensorSpec[] = [];
  for (const role of keysOf(shapes.global)) {
    const required = !(role === 'output' && config.tieWordEmbeddings);
    specs.push({ name: names.global[role], role, shape: shapes.global[role], required });
  }
  for (let l = 0; l < config.numLayers; l++) {
    const layerNames = names.layer(l);
    for (const role of keysOf(shapes.layer)) {
      specs.push({ name: layerNames[role], role, shape: shapes.layer[role], required: true, layer: l });
    }
    for (let e = 0; e < config.numExperts; e++) {
      const expertNames = names.expert(l, e);
      for (const role of keysOf(shapes.expert)) {
        specs.push({
          name: expertNames[role],
          role,
          shape: shapes.expert[role],
          required: true,
          layer: l,
          expert: e,
        });
      }
    }
  }
  return specs;
}

function fill<R extends string>(
  templates: Readonly<Record<R, string>>,
  indices: { l: number; e?: number },
): Record<R, string> {
  const out = {} as Record<R, string>;
  for (const role of keysOf(templates)) {
    let name = templates[role].replaceAll('{l}', String(indices.l));
    if (indices.e !== undefined) name = name.replaceAll('{e}', String(indices.e));
    out[role] = name;
  }
  return out;
}

function checkIndex(what: string, i: number): number {
  if (!Number.isSafeInteger(i) || i < 0)
    throw new RangeError(`${what} index must be an integer >= 0, got ${i}`);
  return i;
}

// Object.keys loses the key type; every record here is built from a closed role union.
function keysOf<R extends string>(record: Readonly<Record<R, unknown>>): R[] {
  return Object.keys(record) as R[];
}
