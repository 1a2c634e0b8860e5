// Maps checkpoint tensors to the roles the graphs take, through the architecture table: the only
// bridge between tensor names and graph code.

import { tensorNames } from '../model/architecture.js';
import type { Checkpoint } from '../model/checkpoint.js';
import type { F32Tensor } from '../tensor.js';
import type { DenseLayerWeights, ExpertWeights, HeadWeights } from './mixtral-graphs.js';

export async function denseLayerWeights(ckpt: Checkpoint, layer: number): Promise<DenseLayerWeights> {
  const n = tensorNames(ckpt.config.modelType).layer(layer);
  return {
    attnNorm: await ckpt.readF32(n.attnNorm),
    qProj: await ckpt.readF32(n.attnQ),
    kProj: await ckpt.readF32(n.attnK),
    vProj: await ckpt.readF32(n.attnV),
    oProj: await ckpt.readF32(n.attnOut),
    moeNorm: await ckpt.readF32(n.ffnNorm),
    gate: await ckpt.readF32(n.router),
  };
}

export async function expertWeights(ckpt: Checkpoint, layer: number, expert: number): Promise<ExpertWeights> {
  const n = tensorNames(ckpt.config.modelType).expert(layer, expert);
  return { w1: await ckpt.readF32(n.w1), w2: await ckpt.readF32(n.w2), w3: await ckpt.readF32(n.w3) };
}

export async function embeddingWeights(ckpt: Checkpoint): Promise<F32Tensor> {
  return ckpt.readF32(tensorNames(ckpt.config.modelType).global.tokenEmbd);
}

export async function headWeights(ckpt: Checkpoint): Promise<HeadWeights> {
  const g = tensorNames(ckpt.config.modelType).global;
  // Tied embeddings: Hugging Face leaves lm_head out of the checkpoint and reuses the embedding.
  const lmHead = ckpt.config.tieWordEmbeddings && !ckpt.has(g.output) ? g.tokenEmbd : g.output;
  return { norm: await ckpt.readF32(g.outputNorm), lmHead: await ckpt.readF32(lmHead) };
}
