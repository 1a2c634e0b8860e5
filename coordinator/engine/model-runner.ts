// The forward pass: embeddings, per-layer dense graph (attention with KV cache, then the router and
// shared experts of an MoE layer, or the whole FFN of a dense layer), the MoE block of each MoE layer
// (coordinator/moe) and the LM head. Runs on the engine thread; callers
// batch sequences (padded [B, S]) so each graph is called once per layer per step.

import type { GraphDims, ModelConfig } from '../../shared/families/family.js';
import type { LayerPlan } from '../../shared/families/layer-plan.js';
import type { Checkpoint } from '../../shared/model/checkpoint.js';
import { quantizeMatMulsInt8 } from '../../shared/onnx/quantize-graph.js';
import {
  f32Input,
  f32Output,
  i64Input,
  type Outputs,
  Session,
  type SessionSettings,
} from '../../shared/onnx/session.js';
import type { RoutingModel, RoutingPolicy } from '../../shared/routing/policy.js';
import type { F32Tensor } from '../../shared/tensor.js';
import type { RoutedSpan } from '../moe/batch-routing.js';
import { addTokenBytes, type ExpertBackend } from '../moe/expert-backend.js';
import { MoeBlock } from '../moe/moe-block.js';
import type { MoeObserver } from '../moe/observer.js';
import { routingModelOf } from '../moe/routing-model.js';
import type { SequenceKvCache } from './kv-cache.js';
import { RopeTable } from './rope.js';

export interface ForwardItem {
  /** New token ids of this sequence (at least one). */
  readonly tokens: ArrayLike<number>;
  /** Cached positions come first; absent = a fresh sequence whose keys/values are not kept. */
  readonly cache?: SequenceKvCache;
  readonly policy: RoutingPolicy;
}

export interface ForwardResult {
  /** Final hidden states (before the final norm), padded [batch, seqLen, hidden]. */
  readonly hidden: Float32Array;
  readonly batch: number;
  readonly seqLen: number;
  /** Per item: expert-token activations summed over its tokens and all MoE layers. */
  readonly activations: Float64Array;
  /** Per item: bytes the expert backend moved over the network for its tokens (0 when local). */
  readonly bytes: Float64Array;
}

export class ModelRunner {
  /** One block per decoder layer; undefined for a dense layer. */
  private readonly moeBlocks: readonly (MoeBlock | undefined)[];
  /** The MoE layers and their native rule, as routing policies see them. */
  readonly routingModel: RoutingModel;
  /**
   * The padded past keys and values of a batch, rebuilt for every layer of every step: reused,
   * since fresh megabytes per layer cost page faults and a full garbage collection every few steps
   * under continuous batching. Safe to share: each is read only by the synchronous run right after
   * it is filled (two-batch overlap interleaves forward passes at the experts' awaits, not there).
   */
  private readonly pastScratch = { keys: new Float32Array(0), values: new Float32Array(0) };

  private constructor(
    readonly config: ModelConfig,
    readonly dims: GraphDims,
    private readonly embedding: F32Tensor,
    private readonly rope: RopeTable,
    private readonly denseLayers: readonly Session[],
    private readonly logitsHead: Session,
    private readonly nllHead: Session,
    private readonly experts: ExpertBackend,
    /** Observers of every MoE layer of every forward pass (e.g. dispatch accounting). */
    private readonly observers: readonly MoeObserver[],
    /** The family's plan: which decoder layers are MoE layers and how they route. */
    plan: LayerPlan,
  ) {
    this.routingModel = routingModelOf(plan, dims.hidden);
    let moeIndex = 0;
    this.moeBlocks = plan.map((layer, l) =>
      layer.kind === 'moe' ? new MoeBlock(l, moeIndex++, layer, experts) : undefined,
    );
  }

  static async load(
    ckpt: Checkpoint,
    experts: ExpertBackend,
    settings: SessionSettings,
    options: {
      readonly observers?: readonly MoeObserver[];
      readonly onProgress?: (done: number, total: number) => void;
    } = {},
  ): Promise<ModelRunner> {
    const onProgress = options.onProgress;
    const config = ckpt.config;
    const family = ckpt.family;
    const dims = family.graphDims(config);
    const total = config.numLayers + 2;
    const dense8 = settings.denseWeights === 'int8';
    const weights = (graph: Uint8Array) => (dense8 ? quantizeMatMulsInt8(graph).model : graph);
    const dense: Session[] = [];
    for (let l = 0; l < config.numLayers; l++) {
      const graph = await family.denseLayerGraph(ckpt, l);
      dense.push(Session.create(`dense layer ${l}`, 'dense', weights(graph), settings));
      onProgress?.(l + 1, total);
    }
    const head = await family.headGraphs(ckpt);
    const logitsHead = Session.create('lm head', 'lm-head', weights(head.logits), settings);
    const nllHead = Session.create('lm head (nll)', 'lm-head', weights(head.nll), settings);
    onProgress?.(total - 1, total);
    const embedding = await family.embedding(ckpt);
    // MLA rotates only qk_rope_head_dim of each head: the table follows the graph's ropeDim.
    const rope = new RopeTable(dims.ropeDim, config.ropeTheta, config.maxPositionEmbeddings);
    onProgress?.(total, total);
    return new ModelRunner(
      config,
      dims,
      embedding,
      rope,
      dense,
      logitsHead,
      nllHead,
      experts,
      options.observers ?? [],
      family.layerPlan(config),
    );
  }

  get maxPositions(): number {
    return this.rope.maxPositions;
  }

  /** `observers` watch this pass's MoE layers, after the runner's own observers. */
  async forward(
    items: readonly ForwardItem[],
    observers: readonly MoeObserver[] = [],
  ): Promise<ForwardResult> {
    const { hidden: H, keyWidth: KW, valueWidth: VW, experts: E } = this.dims;
    const watchers = observers.length === 0 ? this.observers : [...this.observers, ...observers];
    const B = items.length;
    if (B === 0) throw new RangeError('forward: empty batch');
    const lens = items.map((it) => it.tokens.length);
    const pasts = items.map((it) => it.cache?.length ?? 0);
    const S = Math.max(...lens);
    const P = Math.max(...pasts);
    if (Math.min(...lens) < 1) throw new RangeError('forward: every sequence needs at least one new token');

    let hidden: Float32Array = new Float32Array(B * S * H);
    const half = this.rope.half;
    const cos = new Float32Array(B * S * half);
    const sin = new Float32Array(B * S * half);
    for (let b = 0; b < B; b++) {
      const toks = items[b]!.tokens;
      for (let s = 0; s < lens[b]!; s++) {
        const id = toks[s]!;
        if (!Number.isInteger(id) || id < 0 || id >= this.dims.vocab) {
          throw new RangeError(`token id ${id} outside the vocabulary [0, ${this.dims.vocab})`);
        }
        hidden.set(this.embedding.data.subarray(id * H, (id + 1) * H), (b * S + s) * H);
      }
      this.rope.fill(cos, sin, b * S, pasts[b]!, lens[b]!);
    }
    const bias = attentionBias(lens, pasts, S, P);

    // Rows that hold real tokens, in item order; the MoE block only ever sees these.
    const ragged = lens.some((n) => n !== S);
    const rows = ragged ? validRows(lens, S) : undefined;
    const T = rows ? rows.length : B * S;
    const spans: RoutedSpan[] = [];
    for (let b = 0, at = 0; b < B; at += lens[b]!, b++) {
      spans.push({ start: at, end: at + lens[b]!, policy: items[b]!.policy });
    }
    const activations = new Float64Array(B);
    const bytes = new Float64Array(B);
    const tokenBytes = new Float64Array(T);

    const feedsCommon = {
      cos: f32Input(cos, [B, S, half]),
      sin: f32Input(sin, [B, S, half]),
      attn_bias: f32Input(bias, [B, 1, S, P + S]),
    };
    // The layers' outputs go into buffers of this pass, allocated once instead of once per layer
    // (fewer short-lived buffers for the garbage collector); hidden states alternate between two,
    // so a layer never writes the buffer it reads. They belong to this pass alone: a concurrent
    // pass (two-batch overlap) has its own.
    const outputs = new DenseOutputs(B * S, H, E, KW, VW, hidden);
    for (let l = 0; l < this.denseLayers.length; l++) {
      const [pastK, pastV] = gatherPast(items, l, P, KW, VW, this.pastScratch);
      const session = this.denseLayers[l]!;
      const out = session.run(
        {
          ...feedsCommon,
          hidden: f32Input(hidden, [B, S, H]),
          past_key: f32Input(pastK, [B, P, KW]),
          past_value: f32Input(pastV, [B, P, VW]),
        },
        outputs.into(session.outputNames, hidden, [B, S]),
      );
      const newK = f32Output(out, 'new_key');
      const newV = f32Output(out, 'new_value');
      for (let b = 0; b < B; b++) items[b]!.cache?.write(l, newK, newV, b * S, lens[b]!);

      const residual = f32Output(out, 'hidden_out');
      const block = this.moeBlocks[l];
      if (block) {
        const moeIn = rows ? gatherRows(f32Output(out, 'moe_input'), rows, H) : f32Output(out, 'moe_input');
        const probs = rows
          ? gatherRows(f32Output(out, 'router_probs'), rows, E)
          : f32Output(out, 'router_probs');
        const selectAll = block.plan.selectionBias ? f32Output(out, 'router_select') : undefined;
        const select = selectAll && rows ? gatherRows(selectAll, rows, E) : selectAll;
        const acc = rows ? gatherRows(residual, rows, H) : residual;
        const x: F32Tensor = { dtype: 'float32', shape: [T, H], data: moeIn };
        const { decision, transfer } = await block.forward(
          select ? { x, probs, select, spans, accumulate: acc } : { x, probs, spans, accumulate: acc },
          watchers,
        );
        for (let b = 0; b < B; b++) {
          const sp = spans[b]!;
          activations[b]! += decision.offsets[sp.end]! - decision.offsets[sp.start]!;
        }
        addTokenBytes(transfer, tokenBytes);
        if (rows) scatterRows(acc, rows, H, residual);
      }
      hidden = residual;
    }
    for (let b = 0; b < B; b++) {
      items[b]!.cache?.commit(lens[b]!);
      for (let t = spans[b]!.start; t < spans[b]!.end; t++) bytes[b]! += tokenBytes[t]!;
    }
    return { hidden, batch: B, seqLen: S, activations, bytes };
  }

  /** Logits [n, vocab] for n hidden rows [n, hidden]. */
  async logits(rows: Float32Array, n: number): Promise<Float32Array> {
    const out = this.logitsHead.run({ hidden: f32Input(rows, [n, this.dims.hidden]) });
    return f32Output(out, 'logits');
  }

  /** -log p(target) for n hidden rows [n, hidden] and their targets. */
  async nll(rows: Float32Array, targets: BigInt64Array): Promise<Float32Array> {
    const n = targets.length;
    const out = this.nllHead.run({
      hidden: f32Input(rows, [n, this.dims.hidden]),
      targets: i64Input(targets, [n, 1]),
    });
    return f32Output(out, 'nll');
  }

  async close(): Promise<void> {
    for (const s of this.denseLayers) s.release();
    this.logitsHead.release();
    this.nllHead.release();
    await this.experts.close();
  }
}

/**
 * Additive attention mask [B, 1, S, P+S]: query s of item b sees its own cached positions (< past_b)
 * and its new tokens up to itself. Padding query rows see everything so softmax stays finite.
 */
function attentionBias(
  lens: readonly number[],
  pasts: readonly number[],
  S: number,
  P: number,
): Float32Array {
  const T = P + S;
  const bias = new Float32Array(lens.length * S * T);
  for (let b = 0; b < lens.length; b++) {
    for (let s = 0; s < lens[b]!; s++) {
      const row = (b * S + s) * T;
      bias.fill(Number.NEGATIVE_INFINITY, row + pasts[b]!, row + P);
      bias.fill(Number.NEGATIVE_INFINITY, row + P + s + 1, row + T);
    }
  }
  return bias;
}

/** Output buffers of one forward pass's dense-layer calls, by output name. */
class DenseOutputs {
  private readonly hidden: [Float32Array, Float32Array];
  private readonly hiddenWidth: number;
  private readonly byName: ReadonlyMap<string, { data: Float32Array; width: number }>;

  /** `input`: the pass's first hidden states, which become one of the two alternating buffers. */
  constructor(rows: number, H: number, E: number, KW: number, VW: number, input: Float32Array) {
    this.hidden = [input, new Float32Array(rows * H)];
    this.hiddenWidth = H;
    const buffer = (width: number) => ({ data: new Float32Array(rows * width), width });
    this.byName = new Map([
      ['moe_input', buffer(H)],
      ['router_probs', buffer(E)],
      ['router_select', buffer(E)],
      ['new_key', buffer(KW)],
      ['new_value', buffer(VW)],
    ]);
  }

  /**
   * Session.run's `into` for a layer reading `reading`: hidden_out into the other hidden buffer,
   * the known outputs into theirs; outputs this class does not know are left to onnxruntime.
   */
  into(names: readonly string[], reading: Float32Array, [B, S]: readonly [number, number]): Partial<Outputs> {
    const into: Partial<Outputs> = {};
    for (const name of names) {
      if (name === 'hidden_out') {
        const data = this.hidden[0] === reading ? this.hidden[1] : this.hidden[0];
        into[name] = f32Input(data, [B, S, this.hiddenWidth]);
        continue;
      }
      const b = this.byName.get(name);
      if (b) into[name] = f32Input(b.data, [B, S, b.width]);
    }
    return into;
  }
}

/**
 * Past keys/values padded to [B, P, KW] / [B, P, VW], in `scratch` (grown as needed); a single
 * sequence passes its cache views without copying. Padding is zeroed: the attention mask gives it
 * weight 0, and stale values there could be non-finite (0 x Inf is NaN).
 */
function gatherPast(
  items: readonly ForwardItem[],
  layer: number,
  P: number,
  KW: number,
  VW: number,
  scratch: { keys: Float32Array; values: Float32Array },
): [Float32Array, Float32Array] {
  if (items.length === 1) {
    const c = items[0]!.cache;
    return c ? [c.keysOf(layer), c.valuesOf(layer)] : [new Float32Array(0), new Float32Array(0)];
  }
  const B = items.length;
  if (scratch.keys.length < B * P * KW) scratch.keys = new Float32Array(B * P * KW);
  if (scratch.values.length < B * P * VW) scratch.values = new Float32Array(B * P * VW);
  const k = scratch.keys.subarray(0, B * P * KW);
  const v = scratch.values.subarray(0, B * P * VW);
  for (let b = 0; b < B; b++) {
    const c = items[b]!.cache;
    const n = c ? c.length : 0;
    if (c && n > 0) {
      k.set(c.keysOf(layer), b * P * KW);
      v.set(c.valuesOf(layer), b * P * VW);
    }
    k.fill(0, (b * P + n) * KW, (b + 1) * P * KW);
    v.fill(0, (b * P + n) * VW, (b + 1) * P * VW);
  }
  return [k, v];
}

function validRows(lens: readonly number[], S: number): Int32Array {
  const rows = new Int32Array(lens.reduce((a, b) => a + b, 0));
  let r = 0;
  for (let b = 0; b < lens.length; b++) for (let s = 0; s < lens[b]!; s++) rows[r++] = b * S + s;
  return rows;
}

function gatherRows(src: Float32Array, rows: Int32Array, width: number): Float32Array {
  const dst = new Float32Array(rows.length * width);
  for (let r = 0; r < rows.length; r++) {
    dst.set(src.subarray(rows[r]! * width, (rows[r]! + 1) * width), r * width);
  }
  return dst;
}

function scatterRows(src: Float32Array, rows: Int32Array, width: number, dst: Float32Array): void {
  for (let r = 0; r < rows.length; r++) dst.set(src.subarray(r * width, (r + 1) * width), rows[r]! * width);
}
