// The roles tensors play in kmoe's graphs and the machinery that turns a family's name templates and
// shapes into concrete tensor names and specs. Each family's table (e.g. mixtral/tensors.ts) is the
// only place that spells its Hugging Face tensor names (the idea of llama.cpp's llama-arch.cpp).

import type { ModelConfig } from './family.js';

/** Tensors that exist once per model. `output` is the LM head. */
export type GlobalRole = 'tokenEmbd' | 'outputNorm' | 'output';
/** Tensors that exist once per decoder layer. `router` is the MoE gate (logits over experts). */
export type CoreLayerRole = 'attnNorm' | 'attnQ' | 'attnK' | 'attnV' | 'attnOut' | 'ffnNorm' | 'router';
/**
 * Per-layer roles some families add (each family's table lists the ones it has, and on which layers):
 * - attnQBias / attnKBias / attnVBias: q/k/v projection biases (Qwen2-MoE).
 * - attnQNorm / attnKNorm: RMSNorm weights of q and k, per head (Qwen3-MoE, [headDim]) or over the
 *   whole projection (OLMoE, [heads*headDim] / [kvHeads*headDim]).
 * - Multi-head latent attention (DeepSeek): attnQA / attnQANorm / attnQB (q LoRA down, its norm, up;
 *   without a q LoRA rank `attnQ` is the full q projection), attnKvA (kv_a_proj_with_mqa: latent + the
 *   shared rope key), attnKvANorm (norm of the latent), attnKvB (latent -> per-head k_nope and v).
 * - routerBias: the router's selection-score correction bias (DeepSeek-V3 e_score_correction_bias).
 * - sharedW1 / sharedW2 / sharedW3: the shared expert(s), SwiGLU like the routed ones (w1 gate, w2
 *   down, w3 up; DeepSeek's n_shared_experts are stored as one wider FFN); sharedGate its sigmoid gate
 *   [1, hidden] (Qwen2-MoE).
 * - ffnW1 / ffnW2 / ffnW3: the SwiGLU FFN of a dense (non-MoE) layer.
 */
export type ExtraLayerRole =
  | 'attnQBias'
  | 'attnKBias'
  | 'attnVBias'
  | 'attnQNorm'
  | 'attnKNorm'
  | 'attnQA'
  | 'attnQANorm'
  | 'attnQB'
  | 'attnKvA'
  | 'attnKvANorm'
  | 'attnKvB'
  | 'routerBias'
  | 'sharedW1'
  | 'sharedW2'
  | 'sharedW3'
  | 'sharedGate'
  | 'ffnW1'
  | 'ffnW2'
  | 'ffnW3';
export type LayerRole = CoreLayerRole | ExtraLayerRole;
/**
 * Tensors that exist once per expert, named after Mixtral's SwiGLU: w1 = gate projection,
 * w2 = down projection, w3 = up projection. Families that spell them gate_proj / down_proj /
 * up_proj map onto the same roles so the graph code never cares which family it runs.
 */
export type ExpertRole = 'w1' | 'w2' | 'w3';

export type TensorRole = GlobalRole | LayerRole | ExpertRole;

/**
 * Name templates of one family: `{l}` is the layer index, `{e}` the expert index. `L` is the set of
 * layer roles the family has (Mixtral: the core ones); the family's own code sees exactly those.
 */
export interface TensorNameTemplates<L extends LayerRole = CoreLayerRole> {
  readonly global: Readonly<Record<GlobalRole, string>>;
  readonly layer: Readonly<Record<L, string>>;
  readonly expert: Readonly<Record<ExpertRole, string>>;
}

export interface TensorNames<L extends LayerRole = CoreLayerRole> {
  readonly global: Readonly<Record<GlobalRole, string>>;
  layer(l: number): Readonly<Record<L, string>>;
  expert(l: number, e: number): Readonly<Record<ExpertRole, string>>;
}

export interface ExpectedShapes<L extends LayerRole = CoreLayerRole> {
  readonly global: Readonly<Record<GlobalRole, readonly number[]>>;
  readonly layer: Readonly<Record<L, readonly number[]>>;
  readonly expert: Readonly<Record<ExpertRole, readonly number[]>>;
}

/**
 * What the rest of kmoe sees of any family's table (`ModelFamily.tensorNames`): every family has the
 * global and expert roles; which layer roles exist depends on the family (and, for dense or MoE
 * layers, on the layer: `ModelFamily.tensorSpecs` lists the tensors each layer really has).
 */
export interface AnyTensorNames {
  readonly global: Readonly<Record<GlobalRole, string>>;
  layer(l: number): Readonly<Partial<Record<LayerRole, string>>>;
  expert(l: number, e: number): Readonly<Record<ExpertRole, string>>;
}

/** The shapes counterpart of AnyTensorNames. */
export interface AnyExpectedShapes {
  readonly global: Readonly<Record<GlobalRole, readonly number[]>>;
  readonly layer: Readonly<Partial<Record<LayerRole, readonly number[]>>>;
  readonly expert: Readonly<Record<ExpertRole, readonly number[]>>;
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

export function tensorNamesFrom<L extends LayerRole>(templates: TensorNameTemplates<L>): TensorNames<L> {
  return {
    global: templates.global,
    layer: (l) => fill(templates.layer, { l: checkIndex('layer', l) }),
    expert: (l, e) => fill(templates.expert, { l: checkIndex('layer', l), e: checkIndex('expert', e) }),
  };
}

/** What one decoder layer holds: which of the family's layer roles, and how many routed experts. */
export interface LayerTensors<L extends LayerRole> {
  readonly roles: readonly L[];
  readonly experts: number;
}

/**
 * Every tensor for this config when layers differ (dense and MoE layers, optional roles): globals
 * first, then layer by layer (the roles `layerTensors(l)` names, then that layer's experts).
 */
export function tensorSpecsByLayer<L extends LayerRole>(
  names: TensorNames<L>,
  shapes: ExpectedShapes<L>,
  config: ModelConfig,
  layerTensors: (layer: number) => LayerTensors<L>,
): TensorSpec[] {
  const specs: TensorSpec[] = [];
  for (const role of keysOf(shapes.global)) {
    const required = !(role === 'output' && config.tieWordEmbeddings);
    specs.push({ name: names.global[role], role, shape: shapes.global[role], required });
  }
  for (let l = 0; l < config.numLayers; l++) {
    const layerNames = names.layer(l);
    const { roles, experts } = layerTensors(l);
    for (const role of roles) {
      specs.push({ name: layerNames[role], role, shape: shapes.layer[role], required: true, layer: l });
    }
    for (let e = 0; e < experts; e++) {
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

/** Every tensor for this config, globals first, then layer by layer (layer tensors, then experts). */
export function tensorSpecsFrom<L extends LayerRole>(
  names: TensorNames<L>,
  shapes: ExpectedShapes<L>,
  config: ModelConfig,
): TensorSpec[] {
  const roles = keysOf(shapes.layer);
  return tensorSpecsByLayer(names, shapes, config, () => ({ roles, experts: config.numExperts }));
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
