// ONNX graphs for the Mixtral forward pass, built from the model config: one "dense layer" graph per
// decoder layer (attention with KV cache + router), one graph per expert FFN, and the LM head.
// Graphs never see tensor names: callers pass weights already mapped to their roles.

import { ElemType, GraphBuilder } from '../../onnx/graph-builder.js';
import { type F32Tensor, stackRows, type Tensor } from '../../tensor.js';
import type { GraphDims, ModelConfig } from '../family.js';

export interface DenseLayerWeights {
  readonly attnNorm: F32Tensor; // [hidden]
  readonly qProj: F32Tensor; // [heads*headDim, hidden]
  readonly kProj: F32Tensor; // [kvHeads*headDim, hidden]
  readonly vProj: F32Tensor; // [kvHeads*headDim, hidden]
  readonly oProj: F32Tensor; // [hidden, heads*headDim]
  readonly moeNorm: F32Tensor; // [hidden]
  readonly gate: F32Tensor; // [experts, hidden]
}

export interface ExpertWeights {
  readonly w1: F32Tensor; // [ffn, hidden] gate projection
  readonly w2: F32Tensor; // [hidden, ffn] down projection
  readonly w3: F32Tensor; // [ffn, hidden] up projection
}

/** An expert's matrices as 16-bit bfloat16 bits, [out, in] as the checkpoint stores them. */
export interface Bf16ExpertWeights {
  readonly w1: Tensor<'bfloat16'>; // [ffn, hidden]
  readonly w2: Tensor<'bfloat16'>; // [hidden, ffn]
  readonly w3: Tensor<'bfloat16'>; // [ffn, hidden]
}

export interface HeadWeights {
  readonly norm: F32Tensor; // [hidden]
  readonly lmHead: F32Tensor; // [vocab, hidden]
}

export function mixtralGraphDims(c: ModelConfig): GraphDims {
  return {
    hidden: c.hiddenSize,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    kvWidth: c.numKvHeads * c.headDim,
    keyWidth: c.numKvHeads * c.headDim,
    valueWidth: c.numKvHeads * c.headDim,
    ropeDim: c.headDim,
    experts: c.numExperts,
    ffn: c.intermediateSize,
    vocab: c.vocabSize,
    eps: c.rmsNormEps,
  };
}

/**
 * Dense part of one decoder layer for a padded batch [B, S] of new tokens with P cached positions:
 *   inputs  hidden [B,S,H], cos/sin [B,S,D/2] (rotary tables for each new token's position),
 *           past_key/past_value [B,P,kvH*D] (already rotated keys), attn_bias [B,1,S,P+S] (additive mask)
 *   outputs hidden_out = hidden + attention (the residual the MoE output is added to),
 *           moe_input = RMSNorm(hidden_out), router_probs = softmax(router logits) [B,S,E],
 *           new_key/new_value [B,S,kvH*D] for the cache.
 */
export function buildDenseLayerGraph(dims: GraphDims, w: DenseLayerWeights, layer: number): Uint8Array {
  const g = new GraphBuilder(`dense_layer_${layer}`);
  const { hidden, heads, kvHeads, headDim, kvWidth, experts, eps } = dims;
  const qWidth = heads * headDim;
  const x = g.input('hidden', 'float32', ['B', 'S', hidden]);
  const cos = g.input('cos', 'float32', ['B', 'S', headDim / 2]);
  const sin = g.input('sin', 'float32', ['B', 'S', headDim / 2]);
  const pastK = g.input('past_key', 'float32', ['B', 'P', kvWidth]);
  const pastV = g.input('past_value', 'float32', ['B', 'P', kvWidth]);
  const bias = g.input('attn_bias', 'float32', ['B', 1, 'S', 'T']);

  const normed = g.op('RMSNormalization', [x, g.weight('attn_norm', w.attnNorm)], {
    axis: -1,
    epsilon: { float: eps },
  });
  // One matmul for q, k and v: the projections are stacked row-wise, transposed once by constant folding.
  const qkvW = g.op('Transpose', [g.weight('qkv_proj', stackRows([w.qProj, w.kProj, w.vProj]))], {
    perm: [1, 0],
  });
  const qkv = g.op('MatMul', [normed, qkvW]);
  const [q, k, v] = g.opN('Split', [qkv, g.constI64([qWidth, kvWidth, kvWidth])], 3, { axis: -1 });
  const qRot = g.op('RotaryEmbedding', [q!, cos, sin], { num_heads: heads, interleaved: 0 });
  const kRot = g.op('RotaryEmbedding', [k!, cos, sin], { num_heads: kvHeads, interleaved: 0 });
  const keys = g.op('Concat', [pastK, kRot], { axis: 1 });
  const values = g.op('Concat', [pastV, v!], { axis: 1 });
  const attn = g.op('Attention', [qRot, keys, values, bias], { q_num_heads: heads, kv_num_heads: kvHeads });
  const oW = g.op('Transpose', [g.weight('o_proj', w.oProj)], { perm: [1, 0] });
  const residual = g.op('Add', [x, g.op('MatMul', [attn, oW])]);
  const moeIn = g.op('RMSNormalization', [residual, g.weight('moe_norm', w.moeNorm)], {
    axis: -1,
    epsilon: { float: eps },
  });
  const gateW = g.op('Transpose', [g.weight('gate', w.gate)], { perm: [1, 0] });
  const probs = g.op('Softmax', [g.op('MatMul', [moeIn, gateW])], { axis: -1 });

  g.output(residual, 'hidden_out', 'float32', ['B', 'S', hidden]);
  g.output(moeIn, 'moe_input', 'float32', ['B', 'S', hidden]);
  g.output(probs, 'router_probs', 'float32', ['B', 'S', experts]);
  g.output(kRot, 'new_key', 'float32', ['B', 'S', kvWidth]);
  g.output(v!, 'new_value', 'float32', ['B', 'S', kvWidth]);
  return g.build();
}

/** An expert's matrices block-quantized for MatMulNBits (int8-weights.ts / int4-weights.ts layout). */
export interface QuantizedExpertWeights {
  readonly bits: 4 | 8;
  readonly w1: BlockWeights;
  readonly w2: BlockWeights;
  readonly w3: BlockWeights;
}

/** Int8BlockWeights or Int4BlockWeights: [n, k] rows cut into blocks, codes packed per `bits`. */
export interface BlockWeights {
  readonly n: number;
  readonly k: number;
  readonly block: number;
  readonly q: Uint8Array;
  readonly scales: Float32Array;
}

/**
 * One SwiGLU expert, scaled by the routing weight of each row: y = weight * w2(silu(w1 x) * w3 x).
 *   inputs x [N,H], weight [N,1]; output y [N,H]. fp32 weights; the others have their own builders.
 * The matrices are stored transposed ([in, out], w1 and w3 side by side) as the MatMuls read them:
 * transposing here once costs one copy, where a Transpose left to onnxruntime's constant folding
 * held the original, the folded and the serialized copies at once while the session loaded.
 */
export function buildExpertGraph(
  dims: GraphDims,
  w: ExpertWeights,
  layer: number,
  expert: number,
): Uint8Array {
  const g = new GraphBuilder(`expert_${layer}_${expert}`);
  const x = g.input('x', 'float32', ['N', dims.hidden]);
  const weight = g.input('weight', 'float32', ['N', 1]);
  const w13 = g.floats('w13', transposeRows([w.w1, w.w3], Float32Array), [dims.hidden, 2 * dims.ffn]);
  const [a, b] = g.opN('Split', [g.op('MatMul', [x, w13]), g.constI64([dims.ffn, dims.ffn])], 2, {
    axis: -1,
  });
  const act = g.op('Mul', [g.op('Mul', [a!, g.op('Sigmoid', [a!])]), b!]);
  const w2 = g.floats('w2', transposeRows([w.w2], Float32Array), [dims.ffn, dims.hidden]);
  const y = g.op('Mul', [g.op('MatMul', [act, w2]), weight]);
  g.output(y, 'y', 'float32', ['N', dims.hidden]);
  return g.build();
}

/** The same expert with block-quantized weights (`int8`, `int4`): three MatMulNBits. */
export function buildQuantizedExpertGraph(
  dims: GraphDims,
  w: QuantizedExpertWeights,
  layer: number,
  expert: number,
): Uint8Array {
  const g = new GraphBuilder(`expert_${layer}_${expert}`);
  const x = g.input('x', 'float32', ['N', dims.hidden]);
  const weight = g.input('weight', 'float32', ['N', 1]);
  const gate = matMulNBits(g, 'w1', x, w.w1, w.bits);
  const up = matMulNBits(g, 'w3', x, w.w3, w.bits);
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
  const y = g.op('Mul', [matMulNBits(g, 'w2', act, w.w2, w.bits), weight]);
  g.output(y, 'y', 'float32', ['N', dims.hidden]);
  return g.build();
}

/**
 * The same expert with its weights kept as bf16 initializers that the MatMuls read directly: the
 * activations are cast to bf16 for the two GEMMs (which accumulate in fp32 on the CUDA provider)
 * and back to fp32 for SiLU, the product and the routing weight. The matrices are stored already
 * transposed ([in, out]) so no Transpose of a bf16 initializer is left for constant folding.
 * onnxruntime's CPU provider has no bf16 MatMul kernel (the session fails to load), so this graph
 * is for `--device cuda`; see requireWeightFormatOnDevice.
 */
export function buildBf16ExpertGraph(
  dims: GraphDims,
  w: Bf16ExpertWeights,
  layer: number,
  expert: number,
): Uint8Array {
  const g = new GraphBuilder(`expert_${layer}_${expert}`);
  const x = g.input('x', 'float32', ['N', dims.hidden]);
  const weight = g.input('weight', 'float32', ['N', 1]);
  const toBf16 = (v: string) => g.op('Cast', [v], { to: ElemType.bfloat16 });
  const toF32 = (v: string) => g.op('Cast', [v], { to: ElemType.float32 });
  const w13 = g.halfs('w13', 'bfloat16', transposeRows([w.w1, w.w3], Uint16Array), [
    dims.hidden,
    2 * dims.ffn,
  ]);
  const [a, b] = g.opN(
    'Split',
    [toF32(g.op('MatMul', [toBf16(x), w13])), g.constI64([dims.ffn, dims.ffn])],
    2,
    { axis: -1 },
  );
  const act = g.op('Mul', [g.op('Mul', [a!, g.op('Sigmoid', [a!])]), b!]);
  const w2 = g.halfs('w2', 'bfloat16', transposeRows([w.w2], Uint16Array), [dims.ffn, dims.hidden]);
  const y = g.op('Mul', [toF32(g.op('MatMul', [toBf16(act), w2])), weight]);
  g.output(y, 'y', 'float32', ['N', dims.hidden]);
  return g.build();
}

/** The transpose of the row-wise stack of [r_i, c] matrices: [c, sum r_i], in a new array. */
function transposeRows<A extends Float32Array | Uint16Array>(
  parts: readonly { readonly shape: readonly number[]; readonly data: A }[],
  Out: new (length: number) => A,
): A {
  const cols = parts[0]!.shape[1]!;
  let rows = 0;
  for (const p of parts) {
    if (p.shape.length !== 2 || p.shape[1] !== cols)
      throw new RangeError('transposeRows: column counts differ');
    rows += p.shape[0]!;
  }
  const out = new Out(rows * cols);
  let r0 = 0;
  for (const p of parts) {
    const pr = p.shape[0]!;
    const d = p.data;
    for (let r = 0; r < pr; r++) {
      const src = r * cols;
      const col = r0 + r;
      for (let c = 0; c < cols; c++) out[c * rows + col] = d[src + c]!;
    }
    r0 += pr;
  }
  return out;
}

/**
 * x [N, k] times the transpose of the block-quantized [n, k] matrix: com.microsoft MatMulNBits with
 * accuracy_level 4, which also quantizes x per block and computes in int8. The fp32-compute
 * level 0 was ten times slower than fp32 MatMul on the demo experts; level 4 is what makes int8
 * faster (`kmoe bench model --expert-weights int8` times the expert calls). Symmetric weights, so
 * no zero_points input (int8-weights.ts, int4-weights.ts).
 */
function matMulNBits(g: GraphBuilder, name: string, x: string, w: BlockWeights, bits: 4 | 8): string {
  const blocks = w.k / w.block;
  return g.op(
    'MatMulNBits',
    [
      x,
      g.bytes(`${name}_q`, w.q, [w.n, blocks, (w.block * bits) / 8]),
      g.floats(`${name}_scales`, w.scales, [w.n * blocks]),
    ],
    { K: w.k, N: w.n, bits, block_size: w.block, accuracy_level: 4 },
    'com.microsoft',
  );
}

/** Final norm + LM head on [N,H] rows: logits [N,V]. */
export function buildLogitsGraph(dims: GraphDims, w: HeadWeights): Uint8Array {
  const g = new GraphBuilder('lm_head_logits');
  const x = g.input('hidden', 'float32', ['N', dims.hidden]);
  g.output(headLogits(g, dims, w, x), 'logits', 'float32', ['N', dims.vocab]);
  return g.build();
}

/**
 * Final norm + LM head + log-softmax, gathered at the target ids: per-row negative log-likelihood
 * [N]. Scoring inside the graph avoids copying [N, vocab] logits out to JavaScript.
 */
export function buildNllGraph(dims: GraphDims, w: HeadWeights): Uint8Array {
  const g = new GraphBuilder('lm_head_nll');
  const x = g.input('hidden', 'float32', ['N', dims.hidden]);
  const targets = g.input('targets', 'int64', ['N', 1]);
  const logp = g.op('LogSoftmax', [headLogits(g, dims, w, x)], { axis: -1 });
  const picked = g.op('GatherElements', [logp, targets], { axis: 1 });
  const nll = g.op('Neg', [g.op('Squeeze', [picked, g.constI64([1])])]);
  g.output(nll, 'nll', 'float32', ['N']);
  return g.build();
}

function headLogits(g: GraphBuilder, dims: GraphDims, w: HeadWeights, x: string): string {
  const normed = g.op('RMSNormalization', [x, g.weight('final_norm', w.norm)], {
    axis: -1,
    epsilon: { float: dims.eps },
  });
  const headW = g.op('Transpose', [g.weight('lm_head', w.lmHead)], { perm: [1, 0] });
  return g.op('MatMul', [normed, headW]);
}
