// Reads a DeepSeek layer's tensors into the roles the shared decoder-layer graph takes (MLA; a dense
// FFN or the MoE front with its router, correction bias and shared experts).

import type { DecoderLayerWeights, MlaWeights } from '../decoder-graph.js';
import type { TensorSource } from '../family.js';
import type { DeepseekConfig } from './config.js';
import { deepseekTensorNames as names } from './tensors.js';

export async function deepseekLayerWeights(
  c: DeepseekConfig,
  source: TensorSource,
  layer: number,
): Promise<DecoderLayerWeights> {
  const n = names.layer(layer);
  const read = (name: string) => source.readF32(name);
  const q =
    c.qLoraRank === null
      ? { q: await read(n.attnQ) }
      : { qLora: { a: await read(n.attnQA), norm: await read(n.attnQANorm), b: await read(n.attnQB) } };
  const attention: MlaWeights = {
    kind: 'mla',
    ...q,
    kvA: await read(n.attnKvA),
    kvANorm: await read(n.attnKvANorm),
    kvB: await read(n.attnKvB),
    o: await read(n.attnOut),
    kvLoraRank: c.kvLoraRank,
    nopeDim: c.qkNopeHeadDim,
    ropeDim: c.qkRopeHeadDim,
    vDim: c.vHeadDim,
    interleaved: c.ropeInterleave,
    // Plain RoPE only (YaRN's mscale is refused before this point).
    scale: 1 / Math.sqrt(c.qkNopeHeadDim + c.qkRopeHeadDim),
  };
  const common = { attnNorm: await read(n.attnNorm), attention, ffnNorm: await read(n.ffnNorm) };
  if (!c.moeLayers[layer]) {
    const ffn = { w1: await read(n.ffnW1), w2: await read(n.ffnW2), w3: await read(n.ffnW3) };
    return { ...common, tail: { kind: 'dense', ffn } };
  }
  const shared =
    c.nSharedExperts > 0
      ? { shared: { w1: await read(n.sharedW1), w2: await read(n.sharedW2), w3: await read(n.sharedW3) } }
      : {};
  const bias = c.topkMethod === 'noaux_tc' ? { selectionBias: await read(n.routerBias) } : {};
  return {
    ...common,
    tail: { kind: 'moe', router: await read(n.router), gate: c.scoringFunc, ...bias, ...shared },
  };
}
