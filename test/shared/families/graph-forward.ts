// A minimal forward pass over a family's own graphs, for tests that need no engine: embeddings ->
// each layer's graph (onnxruntime, with a KV cache) -> the family's native routing rule computed
// here from the layer plan -> expert graphs -> LM head. It checks the graphs and the layer plan
// against the transformers references before the engine's MoE seam handles these families.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RopeTable } from '../../../coordinator/engine/rope.js';
import type { ModelFamily } from '../../../shared/families/family.js';
import type { LayerPlan, MoeLayerPlan } from '../../../shared/families/layer-plan.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import { defaultSessionSettings, f32Input, f32Output, Session } from '../../../shared/onnx/session.js';

export const MODELS_DIR = fileURLToPath(new URL('../../../models/', import.meta.url));
export const REFERENCE_DIR = fileURLToPath(new URL('../../fixtures/reference/', import.meta.url));

export interface Route {
  readonly experts: number[];
  readonly weights: number[];
  /** Kept expert groups, ascending (group-limited routing only). */
  readonly groups?: number[];
}

/**
 * The native rule of an MoE layer plan for one token: `scores` are router_probs (the weights' basis),
 * `select` router_select when the plan has a selection bias (else the scores rank experts).
 */
export function nativeRoute(
  plan: MoeLayerPlan,
  scores: ArrayLike<number>,
  select?: ArrayLike<number>,
): Route {
  const E = plan.numExperts;
  const rank = select ?? scores;
  let allowed = Array.from({ length: E }, (_, e) => e);
  let groups: number[] | undefined;
  if (plan.groups !== undefined) {
    const { numGroups, topKGroups } = plan.groups;
    const size = E / numGroups;
    const groupScore = (gi: number): number => {
      const vals = Array.from({ length: size }, (_, i) => rank[gi * size + i]!).sort((a, b) => b - a);
      return plan.selectionBias ? vals[0]! + vals[1]! : vals[0]!;
    };
    const order = Array.from({ length: numGroups }, (_, gi) => gi).sort(
      (a, b) => groupScore(b) - groupScore(a) || a - b,
    );
    groups = order.slice(0, topKGroups).sort((a, b) => a - b);
    allowed = allowed.filter((e) => groups!.includes(Math.floor(e / size)));
  }
  const experts = allowed.sort((a, b) => rank[b]! - rank[a]! || a - b).slice(0, plan.nativeK);
  let weights = experts.map((e) => scores[e]!);
  if (plan.renormalize) {
    const sum = weights.reduce((a, b) => a + b, 0) + (plan.gate === 'sigmoid' ? 1e-20 : 0);
    weights = weights.map((w) => w / sum);
  }
  weights = weights.map((w) => w * plan.routedScalingFactor);
  return groups === undefined ? { experts, weights } : { experts, weights, groups };
}

/** The model loaded as its family's graphs, with a KV cache per layer for one sequence. */
export class GraphForward {
  readonly plan: LayerPlan;
  private readonly experts = new Map<string, Session>();
  private keys: Float32Array[];
  private values: Float32Array[];
  length = 0;
  /** Routing of every token seen, per layer (undefined for dense layers). */
  readonly routes: (Route[] | undefined)[];

  private constructor(
    readonly ckpt: Checkpoint,
    readonly family: ModelFamily,
    private readonly layers: Session[],
    private readonly head: Session,
    private readonly embedding: Float32Array,
    private readonly rope: RopeTable,
  ) {
    this.plan = family.layerPlan(ckpt.config);
    this.keys = layers.map(() => new Float32Array(0));
    this.values = layers.map(() => new Float32Array(0));
    this.routes = this.plan.map((l) => (l.kind === 'moe' ? [] : undefined));
  }

  static async open(name: string): Promise<GraphForward> {
    const ckpt = await Checkpoint.open(path.join(MODELS_DIR, name));
    const family = ckpt.family;
    const settings = { ...defaultSessionSettings(), threads: 1 };
    const layers: Session[] = [];
    for (let l = 0; l < ckpt.config.numLayers; l++) {
      layers.push(Session.create(`layer ${l}`, 'dense', await family.denseLayerGraph(ckpt, l), settings));
    }
    const head = Session.create('head', 'lm-head', (await family.headGraphs(ckpt)).logits, settings);
    const dims = family.graphDims(ckpt.config);
    const rope = new RopeTable(dims.ropeDim, ckpt.config.ropeTheta, ckpt.config.maxPositionEmbeddings);
    return new GraphForward(ckpt, family, layers, head, (await family.embedding(ckpt)).data, rope);
  }

  /** Feeds `tokens` after the cached ones; returns their logits [n, vocab]. */
  async step(tokens: readonly number[]): Promise<Float32Array> {
    const dims = this.family.graphDims(this.ckpt.config);
    const { hidden: H, keyWidth: KW, valueWidth: VW } = dims;
    const S = tokens.length;
    const P = this.length;
    let x = new Float32Array(S * H);
    for (let s = 0; s < S; s++) x.set(this.embedding.subarray(tokens[s]! * H, (tokens[s]! + 1) * H), s * H);
    const half = dims.ropeDim / 2;
    const cos = new Float32Array(S * half);
    const sin = new Float32Array(S * half);
    this.rope.fill(cos, sin, 0, P, S);
    const bias = new Float32Array(S * (P + S));
    for (let s = 0; s < S; s++)
      bias.fill(Number.NEGATIVE_INFINITY, s * (P + S) + P + s + 1, (s + 1) * (P + S));
    for (let l = 0; l < this.layers.length; l++) {
      const out = this.layers[l]!.run({
        hidden: f32Input(x, [1, S, H]),
        cos: f32Input(cos, [1, S, half]),
        sin: f32Input(sin, [1, S, half]),
        past_key: f32Input(this.keys[l]!, [1, P, KW]),
        past_value: f32Input(this.values[l]!, [1, P, VW]),
        attn_bias: f32Input(bias, [1, 1, S, P + S]),
      });
      this.keys[l] = concat(this.keys[l]!, f32Output(out, 'new_key'));
      this.values[l] = concat(this.values[l]!, f32Output(out, 'new_value'));
      const next = f32Output(out, 'hidden_out').slice();
      const layerPlan = this.plan[l]!;
      if (layerPlan.kind === 'moe') {
        const moeIn = f32Output(out, 'moe_input');
        const probs = f32Output(out, 'router_probs');
        const select = layerPlan.selectionBias ? f32Output(out, 'router_select') : undefined;
        const E = layerPlan.numExperts;
        for (let s = 0; s < S; s++) {
          const route = nativeRoute(
            layerPlan,
            probs.subarray(s * E, (s + 1) * E),
            select?.subarray(s * E, (s + 1) * E),
          );
          this.routes[l]!.push(route);
          for (let j = 0; j < route.experts.length; j++) {
            const y = await this.expert(
              l,
              route.experts[j]!,
              moeIn.subarray(s * H, (s + 1) * H),
              route.weights[j]!,
            );
            for (let i = 0; i < H; i++) next[s * H + i]! += y[i]!;
          }
        }
      }
      x = next;
    }
    this.length += S;
    const out = this.head.run({ hidden: f32Input(x, [S, H]) });
    return f32Output(out, 'logits');
  }

  private async expert(
    layer: number,
    expert: number,
    x: Float32Array,
    weight: number,
  ): Promise<Float32Array> {
    const key = `${layer}/${expert}`;
    let session = this.experts.get(key);
    if (session === undefined) {
      const graph = await this.family.expertGraph(this.ckpt, layer, expert, 'fp32');
      session = Session.create(`expert ${key}`, 'expert', graph, { ...defaultSessionSettings(), threads: 1 });
      this.experts.set(key, session);
    }
    const H = x.length;
    const out = session.run({
      x: f32Input(x.slice(), [1, H]),
      weight: f32Input(Float32Array.of(weight), [1, 1]),
    });
    return f32Output(out, 'y');
  }

  async close(): Promise<void> {
    for (const s of [...this.layers, this.head, ...this.experts.values()]) s.release();
    await this.ckpt.close();
  }
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

export interface ReferenceCase {
  readonly name: string;
  readonly ids: number[];
  readonly logits: Float32Array;
  readonly vocab: number;
  readonly trace: {
    readonly moeLayers: number[];
    readonly layers: { layer: number; experts: number[][]; weights: number[][]; groups?: number[][] }[];
  };
}

export async function referenceCases(model: string): Promise<ReferenceCase[]> {
  const dir = path.join(REFERENCE_DIR, model);
  const cases = JSON.parse(await readFile(path.join(dir, 'cases.json'), 'utf8')) as {
    name: string;
    ids: number[];
    logits: string;
    shape: [number, number];
    routingTrace: string;
  }[];
  return Promise.all(
    cases.map(async (c) => {
      const buf = await readFile(path.join(dir, c.logits));
      const logits = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
      const trace = JSON.parse(await readFile(path.join(dir, c.routingTrace), 'utf8'));
      return { name: c.name, ids: c.ids, logits, vocab: c.shape[1], trace };
    }),
  );
}

export async function referenceGreedy(
  model: string,
): Promise<{ name: string; promptIds: number[]; greedyIds: number[]; minLogitMargin: number }[]> {
  return JSON.parse(await readFile(path.join(REFERENCE_DIR, model, 'greedy.json'), 'utf8'));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`lengths differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
