// Reads a Mixtral checkpoint's tensors into the roles the graphs take, through the tensor table:
// the only bridge between tensor names and graph code.

import type { F32Tensor } from '../../tensor.js';
import type { TensorSource } from '../family.js';
import type { DenseLayerWeights, HeadWeights } from './graphs.js';
import { mixtralTensorNames as names } from './tensors.js';

export async function denseLayerWeights(source: TensorSource, layer: number): Promise<DenseLayerWeights> {
  const n = names.layer(layer);
  return {
    attnNorm: await source.readF32(n.attnNorm),
    qProj: await source.readF32(n.attnQ),
    kProj: await source.readF32(n.attnK),
    vProj: await source.readF32(n.attnV),
    oProj: await source.readF32(n.attnOut),
    moeNorm: await source.readF32(n.ffnNorm),
    gate: await source.readF32(n.router),
  };
}

export async function embeddingWeights(source: TensorSource): Promise<F32Tensor> {
  return source.readF32(names.global.tokenEmbd);
}

export async function headWeights(source: TensorSource): Promise<HeadWeights> {
  const g = names.global;
  // Tied embeddings: Hugging Face leaves lm_head out of the checkpoint and reuses the embedding.
  const lmHead = source.config.tieWordEmbeddings && !source.has(g.output) ? g.tokenEmbd : g.output;
  return { norm: await source.readF32(g.outputNorm), lmHead: await source.readF32(lmHead) };
}
