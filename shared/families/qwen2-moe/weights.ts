// Reads a Qwen2-MoE layer's tensors into the roles the shared decoder-layer graph takes.

import type { DecoderLayerWeights } from '../decoder-graph.js';
import type { TensorSource } from '../family.js';
import { asQwen2MoeConfig } from './config.js';
import { qwen2MoeTensorNames as names } from './tensors.js';

export async function qwen2MoeLayerWeights(
  source: TensorSource,
  layer: number,
): Promise<DecoderLayerWeights> {
  const c = asQwen2MoeConfig(source.config);
  const n = names.layer(layer);
  const read = (name: string) => source.readF32(name);
  const attention = {
    kind: 'gqa' as const,
    q: await read(n.attnQ),
    k: await read(n.attnK),
    v: await read(n.attnV),
    o: await read(n.attnOut),
    ...(c.qkvBias
      ? { bias: { q: await read(n.attnQBias), k: await read(n.attnKBias), v: await read(n.attnVBias) } }
      : {}),
  };
  const common = { attnNorm: await read(n.attnNorm), attention, ffnNorm: await read(n.ffnNorm) };
  if (!c.moeLayers[layer]) {
    const ffn = { w1: await read(n.ffnW1), w2: await read(n.ffnW2), w3: await read(n.ffnW3) };
    return { ...common, tail: { kind: 'dense', ffn } };
  }
  const router = await read(n.router);
  if (c.sharedExpertIntermediateSize === 0)
    return { ...common, tail: { kind: 'moe', router, gate: 'softmax' } };
  const shared = { w1: await read(n.sharedW1), w2: await read(n.sharedW2), w3: await read(n.sharedW3) };
  const sharedGate = await read(n.sharedGate);
  return { ...common, tail: { kind: 'moe', router, gate: 'softmax', shared, sharedGate } };
}
