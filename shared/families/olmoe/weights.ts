// Reads an OLMoE layer's tensors into the roles the shared decoder-layer graph takes.

import type { DecoderLayerWeights } from '../decoder-graph.js';
import type { TensorSource } from '../family.js';
import { asOlmoeConfig } from './config.js';
import { olmoeTensorNames as names } from './tensors.js';

export async function olmoeLayerWeights(source: TensorSource, layer: number): Promise<DecoderLayerWeights> {
  const c = asOlmoeConfig(source.config);
  const n = names.layer(layer);
  const read = (name: string) => source.readF32(name);
  const attention = {
    kind: 'gqa' as const,
    q: await read(n.attnQ),
    k: await read(n.attnK),
    v: await read(n.attnV),
    o: await read(n.attnOut),
    qkNorm: { scope: 'projection' as const, q: await read(n.attnQNorm), k: await read(n.attnKNorm) },
    ...(c.clipQkv === null ? {} : { clipQkv: c.clipQkv }),
  };
  return {
    attnNorm: await read(n.attnNorm),
    attention,
    ffnNorm: await read(n.ffnNorm),
    tail: { kind: 'moe', router: await read(n.router), gate: 'softmax' },
  };
}
