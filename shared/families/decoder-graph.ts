// The decoder-layer graph the non-Mixtral families share, assembled from parts: grouped-query
// attention (optional q/k/v biases, q/k RMSNorm per head or over the whole projection, qkv clipping)
// or multi-head latent attention (DeepSeek MLA), then either a dense SwiGLU FFN or the MoE front
// (router scores, optional selection bias, shared experts computed here). Interface: ModelFamily's
// "dense layer" in family.ts. Graphs never see tensor names: callers pass weights by role.

import { GraphBuilder } from '../onnx/graph-builder.js';
import { type F32Tensor, stackRows } from '../tensor.js';
import type { GraphDims } from './family.js';
import type { GateKind } from './layer-plan.js';

/** SwiGLU FFN: w2(silu(w1 x) * w3 x). Shapes [ffn, hidden], [hidden, ffn], [ffn, hidden]. */
export interface SwiGluWeights {
  readonly w1: F32Tensor;
  readonly w2: F32Tensor;
  readonly w3: F32Tensor;
}

/** Grouped-query attention with rotate-half RoPE over whole heads (Qwen2/3-MoE, OLMoE). */
export interface GqaWeights {
  readonly kind: 'gqa';
  readonly q: F32Tensor; // [heads*D, H]
  readonly k: F32Tensor; // [kvHeads*D, H]
  readonly v: F32Tensor; // [kvHeads*D, H]
  readonly o: F32Tensor; // [H, heads*D]
  /** q/k/v projection biases (Qwen2-MoE), all three or none. */
  readonly bias?: { readonly q: F32Tensor; readonly k: F32Tensor; readonly v: F32Tensor };
  /**
   * RMSNorm of q and k before RoPE: over each head's D values (Qwen3-MoE, weights [D]) or over the
   * whole projection (OLMoE, weights [heads*D] and [kvHeads*D]).
   */
  readonly qkNorm?: { readonly scope: 'head' | 'projection'; readonly q: F32Tensor; readonly k: F32Tensor };
  /** Clamp q, k and v to [-clip, clip] after the projections (OLMoE clip_qkv); absent = no clamp. */
  readonly clipQkv?: number;
}

/** Multi-head latent attention (DeepSeek-V2/V3). */
export interface MlaWeights {
  readonly kind: 'mla';
  /** q LoRA: down [qLoraRank, H], its RMSNorm [qLoraRank], up [heads*(nope+rope), qLoraRank]; or `q`. */
  readonly qLora?: { readonly a: F32Tensor; readonly norm: F32Tensor; readonly b: F32Tensor };
  /** Full q projection [heads*(nope+rope), H] when the model has no q LoRA rank (V2-Lite). */
  readonly q?: F32Tensor;
  readonly kvA: F32Tensor; // [kvLoraRank + rope, H]
  readonly kvANorm: F32Tensor; // [kvLoraRank]
  readonly kvB: F32Tensor; // [heads*(nope + v), kvLoraRank]
  readonly o: F32Tensor; // [H, heads*v]
  readonly kvLoraRank: number;
  readonly nopeDim: number;
  readonly ropeDim: number;
  readonly vDim: number;
  /** Rotate interleaved pairs (DeepSeek's layout, rope_interleave) or rotate-half halves. */
  readonly interleaved: boolean;
  /** Attention score scale (1/sqrt(nope+rope), times YaRN's mscale^2 where that applies). */
  readonly scale: number;
}

export type DecoderLayerTail =
  | { readonly kind: 'dense'; readonly ffn: SwiGluWeights }
  | {
      readonly kind: 'moe';
      readonly router: F32Tensor; // [E, H]
      readonly gate: GateKind;
      /** Selection-score correction bias [E] (DeepSeek-V3): adds the router_select output. */
      readonly selectionBias?: F32Tensor;
      /** Shared expert(s) as one SwiGLU, always computed on moe_input. */
      readonly shared?: SwiGluWeights;
      /** Sigmoid gate [1, H] on the shared expert's output (Qwen2-MoE); absent = weight 1. */
      readonly sharedGate?: F32Tensor;
    };

export interface DecoderLayerWeights {
  readonly attnNorm: F32Tensor; // [H]
  readonly attention: GqaWeights | MlaWeights;
  readonly ffnNorm: F32Tensor; // [H]
  readonly tail: DecoderLayerTail;
}

/**
 * One decoder layer for a padded batch [B, S] of new tokens with P cached positions (see the "dense
 * layer" interface on ModelFamily): attention with KV cache, then a dense FFN (hidden_out is the
 * layer's output) or the MoE front (hidden_out = residual + shared experts, moe_input, router_probs,
 * router_select when the tail has a selection bias).
 */
export function buildDecoderLayerGraph(dims: GraphDims, w: DecoderLayerWeights, layer: number): Uint8Array {
  const g = new GraphBuilder(`decoder_layer_${layer}`);
  const { hidden, eps, keyWidth, valueWidth, ropeDim } = dims;
  const x = g.input('hidden', 'float32', ['B', 'S', hidden]);
  const cos = g.input('cos', 'float32', ['B', 'S', ropeDim / 2]);
  const sin = g.input('sin', 'float32', ['B', 'S', ropeDim / 2]);
  const pastK = g.input('past_key', 'float32', ['B', 'P', keyWidth]);
  const pastV = g.input('past_value', 'float32', ['B', 'P', valueWidth]);
  const bias = g.input('attn_bias', 'float32', ['B', 1, 'S', 'T']);
  const rope: Rope = { cos, sin };

  const normed = rmsNorm(g, 'attn_norm', x, w.attnNorm, eps);
  const a =
    w.attention.kind === 'gqa'
      ? gqa(g, dims, w.attention, normed, rope, pastK, pastV, bias)
      : mla(g, dims, w.attention, normed, rope, pastK, pastV, bias);
  const residual = g.op('Add', [x, linear(g, 'o_proj', a.out, w.attention.o)]);
  const ffnIn = rmsNorm(g, 'ffn_norm', residual, w.ffnNorm, eps);

  g.output(a.newKey, 'new_key', 'float32', ['B', 'S', keyWidth]);
  g.output(a.newValue, 'new_value', 'float32', ['B', 'S', valueWidth]);
  const tail = w.tail;
  if (tail.kind === 'dense') {
    const out = g.op('Add', [residual, swiGlu(g, 'ffn', ffnIn, tail.ffn)]);
    g.output(out, 'hidden_out', 'float32', ['B', 'S', hidden]);
    return g.build();
  }

  const logits = linear(g, 'router', ffnIn, tail.router);
  const scores =
    tail.gate === 'softmax' ? g.op('Softmax', [logits], { axis: -1 }) : g.op('Sigmoid', [logits]);
  let out = residual;
  if (tail.shared !== undefined) {
    let shared = swiGlu(g, 'shared', ffnIn, tail.shared);
    if (tail.sharedGate !== undefined) {
      const gate = g.op('Sigmoid', [linear(g, 'shared_gate', ffnIn, tail.sharedGate)]); // [B,S,1]
      shared = g.op('Mul', [shared, gate]);
    }
    out = g.op('Add', [residual, shared]);
  }
  g.output(out, 'hidden_out', 'float32', ['B', 'S', hidden]);
  g.output(ffnIn, 'moe_input', 'float32', ['B', 'S', hidden]);
  g.output(scores, 'router_probs', 'float32', ['B', 'S', dims.experts]);
  if (tail.selectionBias !== undefined) {
    const select = g.op('Add', [scores, g.weight('selection_bias', tail.selectionBias)]);
    g.output(select, 'router_select', 'float32', ['B', 'S', dims.experts]);
  }
  return g.build();
}

interface Rope {
  readonly cos: string;
  readonly sin: string;
}

interface AttentionOut {
  /** Attention output before o_proj, [B,S,heads*vDim]. */
  readonly out: string;
  readonly newKey: string;
  readonly newValue: string;
}

function gqa(
  g: GraphBuilder,
  dims: GraphDims,
  w: GqaWeights,
  normed: string,
  rope: Rope,
  pastK: string,
  pastV: string,
  bias: string,
): AttentionOut {
  const { heads, kvHeads, headDim, eps } = dims;
  const qWidth = heads * headDim;
  const kvWidth = kvHeads * headDim;
  // One matmul for q, k and v (and their biases), as Mixtral's graph does.
  const stackedBias = w.bias && concat1d([w.bias.q, w.bias.k, w.bias.v]);
  const qkv = linear(g, 'qkv_proj', normed, stackRows([w.q, w.k, w.v]), stackedBias);
  let [q, k, v] = g.opN('Split', [qkv, g.constI64([qWidth, kvWidth, kvWidth])], 3, { axis: -1 }) as [
    string,
    string,
    string,
  ];
  if (w.qkNorm?.scope === 'projection') {
    q = rmsNorm(g, 'q_norm', q, w.qkNorm.q, eps);
    k = rmsNorm(g, 'k_norm', k, w.qkNorm.k, eps);
  }
  if (w.clipQkv !== undefined) {
    const lo = g.constF32([-w.clipQkv], []);
    const hi = g.constF32([w.clipQkv], []);
    [q, k, v] = [q, k, v].map((t) => g.op('Clip', [t, lo, hi])) as [string, string, string];
  }
  if (w.qkNorm?.scope === 'head') {
    q = perHead(g, q, heads, headDim, (t) => rmsNorm(g, 'q_norm', t, w.qkNorm!.q, eps));
    k = perHead(g, k, kvHeads, headDim, (t) => rmsNorm(g, 'k_norm', t, w.qkNorm!.k, eps));
  }
  const qRot = g.op('RotaryEmbedding', [q, rope.cos, rope.sin], { num_heads: heads, interleaved: 0 });
  const kRot = g.op('RotaryEmbedding', [k, rope.cos, rope.sin], { num_heads: kvHeads, interleaved: 0 });
  const keys = g.op('Concat', [pastK, kRot], { axis: 1 });
  const values = g.op('Concat', [pastV, v], { axis: 1 });
  const out = g.op('Attention', [qRot, keys, values, bias], { q_num_heads: heads, kv_num_heads: kvHeads });
  return { out, newKey: kRot, newValue: v };
}

/**
 * DeepSeek MLA, caching the expanded per-head keys [k_nope | rotated k_rope] and values (widths
 * heads*(nope+rope) and heads*v). RoPE rotates interleaved pairs in place; transformers instead
 * writes each rotated part back evens-then-odds, for q and k alike, so the scores are the same.
 */
function mla(
  g: GraphBuilder,
  dims: GraphDims,
  w: MlaWeights,
  normed: string,
  rope: Rope,
  pastK: string,
  pastV: string,
  bias: string,
): AttentionOut {
  const { heads, eps } = dims;
  const { nopeDim, ropeDim, vDim, kvLoraRank } = w;
  const qkDim = nopeDim + ropeDim;
  let q: string;
  if (w.qLora !== undefined) {
    const qa = rmsNorm(g, 'q_a_norm', linear(g, 'q_a_proj', normed, w.qLora.a), w.qLora.norm, eps);
    q = linear(g, 'q_b_proj', qa, w.qLora.b);
  } else if (w.q !== undefined) {
    q = linear(g, 'q_proj', normed, w.q);
  } else {
    throw new RangeError('MLA weights need either qLora or q');
  }
  const [qNope, qPe] = g.opN(
    'Split',
    [g.op('Reshape', [q, g.constI64([0, 0, heads, qkDim])]), g.constI64([nopeDim, ropeDim])],
    2,
    { axis: -1 },
  ) as [string, string];
  const qPeRot = g.op(
    'RotaryEmbedding',
    [g.op('Reshape', [qPe, g.constI64([0, 0, heads * ropeDim])]), rope.cos, rope.sin],
    { num_heads: heads, interleaved: w.interleaved ? 1 : 0 },
  );
  const qFull = g.op('Concat', [qNope, g.op('Reshape', [qPeRot, g.constI64([0, 0, heads, ropeDim])])], {
    axis: -1,
  });

  const [latent, kPe] = g.opN(
    'Split',
    [linear(g, 'kv_a_proj', normed, w.kvA), g.constI64([kvLoraRank, ropeDim])],
    2,
    { axis: -1 },
  ) as [string, string];
  const kv = linear(g, 'kv_b_proj', rmsNorm(g, 'kv_a_norm', latent, w.kvANorm, eps), w.kvB);
  const [kNope, v] = g.opN(
    'Split',
    [g.op('Reshape', [kv, g.constI64([0, 0, heads, nopeDim + vDim])]), g.constI64([nopeDim, vDim])],
    2,
    { axis: -1 },
  ) as [string, string];
  // One rope key per token, shared by every head.
  const kPeRot = g.op('RotaryEmbedding', [kPe, rope.cos, rope.sin], {
    num_heads: 1,
    interleaved: w.interleaved ? 1 : 0,
  });
  const kPeHeads = g.op('Expand', [
    g.op('Unsqueeze', [kPeRot, g.constI64([2])]),
    g.constI64([1, 1, heads, 1]),
  ]);
  const kFull = g.op('Concat', [kNope, kPeHeads], { axis: -1 });

  const newKey = g.op('Reshape', [kFull, g.constI64([0, 0, heads * qkDim])]);
  const newValue = g.op('Reshape', [v, g.constI64([0, 0, heads * vDim])]);
  const keys = g.op('Concat', [pastK, newKey], { axis: 1 });
  const values = g.op('Concat', [pastV, newValue], { axis: 1 });
  const qFlat = g.op('Reshape', [qFull, g.constI64([0, 0, heads * qkDim])]);
  const out = g.op('Attention', [qFlat, keys, values, bias], {
    q_num_heads: heads,
    kv_num_heads: heads,
    scale: { float: w.scale },
  });
  return { out, newKey, newValue };
}

/** `x W^T (+ b)` for an nn.Linear weight W [out, in]; the transpose is folded at session creation. */
export function linear(g: GraphBuilder, name: string, x: string, w: F32Tensor, b?: F32Tensor): string {
  const wT = g.op('Transpose', [g.weight(name, w)], { perm: [1, 0] });
  const y = g.op('MatMul', [x, wT]);
  return b === undefined ? y : g.op('Add', [y, g.weight(`${name}_bias`, b)]);
}

export function rmsNorm(g: GraphBuilder, name: string, x: string, w: F32Tensor, eps: number): string {
  return g.op('RMSNormalization', [x, g.weight(name, w)], {
    axis: -1,
    epsilon: { float: eps },
  });
}

/** SwiGLU on [.., H] rows, w1 and w3 in one matmul. */
export function swiGlu(g: GraphBuilder, name: string, x: string, w: SwiGluWeights): string {
  const ffn = w.w1.shape[0]!;
  const [a, b] = g.opN(
    'Split',
    [linear(g, `${name}_w13`, x, stackRows([w.w1, w.w3])), g.constI64([ffn, ffn])],
    2,
    {
      axis: -1,
    },
  ) as [string, string];
  const act = g.op('Mul', [g.op('Mul', [a, g.op('Sigmoid', [a])]), b]);
  return linear(g, `${name}_w2`, act, w.w2);
}

/** Applies `f` to [B,S,heads,D] views of a [B,S,heads*D] tensor. */
function perHead(g: GraphBuilder, x: string, heads: number, d: number, f: (t: string) => string): string {
  const y = f(g.op('Reshape', [x, g.constI64([0, 0, heads, d])]));
  return g.op('Reshape', [y, g.constI64([0, 0, heads * d])]);
}

function concat1d(parts: readonly F32Tensor[]): F32Tensor {
  const n = parts.reduce((s, p) => s + p.data.length, 0);
  const data = new Float32Array(n);
  let at = 0;
  for (const p of parts) {
    data.set(p.data, at);
    at += p.data.length;
  }
  return { dtype: 'float32', shape: [n], data };
}
