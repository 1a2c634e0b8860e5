// The roles tensors play in kmoe's graphs and the machinery that turns a family's name templates and
// shapes into concrete tensor names and specs. Each family's table (e.g. mixtral/tensors.ts) is the
// only place that spells its Hugging Face tensor names (the idea of llama.cpp's llama-arch.cpp).

import type { ModelConfig } from './family.js';

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

/** Name templates of one family: `{l}` is the layer index, `{e}` the expert index. */
export interface TensorNameTemplates {
  readonly global: Readonly<Record<GlobalRole, string>>;
  readonly layer: Readonly<Record<LayerRole, string>>;
  readonly expert: Readonly<Record<ExpertRole, string>>;
}

export interface TensorNames {
  readonly global: Readonly<Record<GlobalRole, string>>;
  layer(l: number): Readonly<Record<LayerRole, string>>;
  expert(l: number, e: number): Readonly<Record<ExpertRole, string>>;
}

export interface ExpectedShapes {
  readonly global: Readonly<Record<GlobalRole, readonly number[]>>;
  readonly layer: Readonly<Record<LayerRole, readonly number[]>>;
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

export function tensorNamesFrom(templates: TensorNameTemplates): TensorNames {
  return {
    global: templates.global,
    layer: (l) => fill(templates.layer, { l: checkIndex('layer', l) }),
    expert: (l, e) => fill(templates.expert, { l: checkIndex('layer', l), e: checkIndex('expert', e) }),
  };
}

/** Every tensor for this config, globals first, then layer by layer (layer tensors, then experts). */
export function tensorSpecsFrom(
  names: TensorNames,
  shapes: ExpectedShapes,
  config: ModelConfig,
): TensorSpec[] {
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
