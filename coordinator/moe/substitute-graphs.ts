// Linear substitutes of skipped experts, applied to a whole batch by one onnxruntime call per MoE
// layer (the SubstituteBatchKernel the engine gives its routing policies). In JS a skipped pair costs
// 8-22 us (16 K multiply-adds at hidden 256, rank 32, V8 does not vectorise); the graph computes every
// expert's rank-r projection of every row as one GEMM and lets the skip weights pick: for a batch
// of 16 rows ~50 us in all, against ~10 skipped pairs x 8-22 us. It does E / (skipped pairs per
// row), ~12 times, the arithmetic needed, which MLAS does faster than JS does the needed part.
//
//   z = x Dt                  [n, E r]   Dt[i, e r + k] = down[layer, e, k, i]
//   y = (z * w per expert) Ut + w B      Ut[e r + k, i] = up[layer, e, i, k], B = bias[layer]

import { GraphBuilder } from '../../shared/onnx/graph-builder.js';
import { f32Input, Session, type SessionSettings } from '../../shared/onnx/session.js';
import type { ExpertSubstitutes, SubstituteBatchKernel } from '../../shared/routing/expert-substitutes.js';

/** The sessions of one table: keyed by its `down` array, valid for these `up` and `bias` arrays. */
interface TableSessions {
  readonly up: Float32Array;
  readonly bias: Float32Array;
  readonly layers: (Session | undefined)[];
}

export class SubstituteGraphs implements SubstituteBatchKernel {
  /**
   * One session per MoE layer of each substitute table. Keyed by the decoded arrays, which the
   * base64 decoder shares between decodes of the same text: a profile resolved again (after the
   * engine's policy cache dropped it) finds its sessions.
   */
  private readonly tables = new WeakMap<Float32Array, TableSessions>();
  private readonly settings: SessionSettings;

  /**
   * `settings`: the engine's. The graphs are small GEMMs of a few rows, where a second intra-op
   * thread costs more in synchronisation than it saves: they run on one.
   */
  constructor(settings: SessionSettings) {
    this.settings = { ...settings, threads: 1 };
  }

  apply(
    s: ExpertSubstitutes,
    layer: number,
    numTokens: number,
    x: Float32Array,
    weights: Float32Array,
    out: Float32Array,
  ): void {
    const { hidden: H, experts: E } = s;
    if (x.length !== numTokens * H || weights.length !== numTokens * E || out.length !== numTokens * H) {
      throw new RangeError(
        `substitutes of layer ${layer}: x ${x.length}, weights ${weights.length}, out ${out.length} values for ${numTokens} rows of hidden ${H} and ${E} experts`,
      );
    }
    if (numTokens === 0) return;
    this.session(s, layer).run(
      { x: f32Input(x, [numTokens, H]), w: f32Input(weights, [numTokens, E]) },
      { y: f32Input(out, [numTokens, H]) },
    );
  }

  /** Builds every layer's session now (~4 ms each at hidden 256) instead of in the first batch. */
  prepare(s: ExpertSubstitutes): void {
    for (let layer = 0; layer < s.layers; layer++) this.session(s, layer);
  }

  private session(s: ExpertSubstitutes, layer: number): Session {
    if (!(Number.isInteger(layer) && layer >= 0 && layer < s.layers))
      throw new RangeError(`substitutes: MoE layer ${layer} is outside 0..${s.layers - 1}`);
    let table = this.tables.get(s.down);
    if (table?.up !== s.up || table.bias !== s.bias) {
      table = { up: s.up, bias: s.bias, layers: new Array<Session | undefined>(s.layers) };
      this.tables.set(s.down, table);
    }
    const layers = table.layers;
    layers[layer] ??= Session.create(
      `substitutes of MoE layer ${layer}`,
      'substitutes',
      substituteGraph(s, layer),
      this.settings,
    );
    return layers[layer];
  }
}

/** The ONNX graph of one layer's substitutes: inputs x [n, hidden], w [n, experts]; output y [n, hidden]. */
export function substituteGraph(s: ExpertSubstitutes, layer: number): Uint8Array {
  const { experts: E, rank: R, hidden: H } = s;
  const dt = new Float32Array(H * E * R);
  const ut = new Float32Array(E * R * H);
  for (let e = 0; e < E; e++) {
    const le = layer * E + e;
    for (let k = 0; k < R; k++) {
      const col = e * R + k;
      for (let i = 0; i < H; i++) {
        dt[i * E * R + col] = s.down[(le * R + k) * H + i]!;
        ut[col * H + i] = s.up[(le * H + i) * R + k]!;
      }
    }
  }
  const bias = s.bias.slice(layer * E * H, (layer + 1) * E * H);
  const g = new GraphBuilder(`substitutes_${layer}`);
  const x = g.input('x', 'float32', ['n', H]);
  const w = g.input('w', 'float32', ['n', E]);
  const z = g.op('MatMul', [x, g.floats('down_t', dt, [H, E * R])]);
  const perExpert = g.op('Reshape', [z, g.constI64([0, E, R])]);
  const weighted = g.op('Mul', [perExpert, g.op('Unsqueeze', [w, g.constI64([2])])]);
  const flat = g.op('Reshape', [weighted, g.constI64([0, E * R])]);
  const y = g.op('Add', [
    g.op('MatMul', [flat, g.floats('up_t', ut, [E * R, H])]),
    g.op('MatMul', [w, g.floats('bias', bias, [E, H])]),
  ]);
  g.output(y, 'y', 'float32', ['n', H]);
  return g.build();
}
