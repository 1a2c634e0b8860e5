// Reads a Qwen3-MoE layer's tensors into the roles the shared decoder-layer graph takes.

import type { DecoderLayerWeights } from '../decoder-graph.js';
import type { TensorSource } from '../family.js';
import { asQwen3MoeConfig } from './config.js';
import { qwen3MoeTensorNames as names } from './tensors.js';

export async function qwen3MoeLayerWeights(
  source: TensorSource,
  layer: number,
): Promise<DecoderLayerWeights> {
  const c = asQwen3MoeConfig(source.config);
  const n = names.layer(layer);
  const read = (name: string) => source.readF32(name);
  const attention = {
    kind: 'gqa' as const,
    q: await read(n.attnQ),
    k: await read(n.attnK),
    v: await read(n.attnV),
    o: await read(n.attnOut),
    qkNorm: { scope: 'head' as const, q: await read(n.attnQNorm), k: await read(n.attnKNorm) },
  };
  const common = { attnNorm: await read(n.attnNorm), attention, ffnNorm: await read(n.ffnNorm) };
  if (!c.moeLayers[layer]) {
    const ffn = { w1: await read(n.ffnW1), w2: await read(n.ffnW2), w3: await read(n.ffnW3) };
    return { ...common, tail: { kind: 'dense', ffn } };
  }
  return { ...common, tail: { kind: 'moe', router: await read(n.router), gate: 'softmax' } };
}
