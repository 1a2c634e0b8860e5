// Calibration probe for the learned allocator: under native top-2 routing it runs each token's
// rank-1 and rank-2 experts alone through the same backend and records, per token and MoE layer,
// the router features and the measured cost of dropping experts when the dropped ones are replaced
// by their calibrated mean (what an allocator profile does): the squared norm of the error this
// adds to the residual stream, for K = 1 (drop rank 2) and K = 0 (drop both). It also accumulates
// each expert's mean output at rank 1 and at rank 2, so a first pass yields the means a second pass
// measures costs against. Doubles expert work; calibration only.

import type { ExpertAssignment } from '../../../shared/moe/expert-assignment.js';
import type { ExpertMeans } from '../../../shared/routing/expert-means.js';
import type { ExpertBackend } from '../expert-backend.js';
import type { MoeLayerEvent, MoeObserver } from '../observer.js';

/** Per MoE layer, one entry per token seen (all arrays the same length). */
export interface DropCostLayer {
  readonly p1: Float32Array;
  readonly p2: Float32Array;
  readonly entropy: Float32Array;
  /** Rank-1 and rank-2 experts. */
  readonly e1: Int32Array;
  readonly e2: Int32Array;
  /** ||w2 (y2 - mean2)||^2: the residual error of K = 1 with the prior. */
  readonly dropSecond: Float32Array;
  /** ||w1 (y1 - mean1) + w2 (y2 - mean2)||^2: the residual error of K = 0 with the prior. */
  readonly dropAll: Float32Array;
}

export interface DropCostTable {
  readonly tokens: number;
  readonly layers: DropCostLayer[];
  /** Mean output of each (layer, expert) over the tokens that had it at rank 1 / rank 2, this pass. */
  readonly leadMeans: ExpertMeans;
  readonly secondMeans: ExpertMeans;
}

class Column<T extends Float32Array | Int32Array> {
  private parts: T[] = [];
  push(part: T): void {
    this.parts.push(part);
  }
  join(make: (n: number) => T): T {
    const out = make(this.parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of this.parts) {
      out.set(p as never, at);
      at += p.length;
    }
    return out;
  }
}

interface LayerColumns {
  p1: Column<Float32Array>;
  p2: Column<Float32Array>;
  entropy: Column<Float32Array>;
  e1: Column<Int32Array>;
  e2: Column<Int32Array>;
  dropSecond: Column<Float32Array>;
  dropAll: Column<Float32Array>;
}

export class DropCostProbe implements MoeObserver {
  private readonly columns: LayerColumns[];
  private tokens = 0;
  private readonly sums: [Float64Array, Float64Array];
  private readonly counts: [Float64Array, Float64Array];

  /**
   * `backend` is borrowed (not closed); the decisions observed must be native top-2. Costs are
   * measured against `means.lead` (rank 1) and `means.second` (rank 2).
   */
  constructor(
    private readonly backend: ExpertBackend,
    private readonly means: { readonly lead: ExpertMeans; readonly second: ExpertMeans },
  ) {
    const { layers, experts, hidden } = means.second;
    this.sums = [new Float64Array(layers * experts * hidden), new Float64Array(layers * experts * hidden)];
    this.counts = [new Float64Array(layers * experts), new Float64Array(layers * experts)];
    this.columns = Array.from({ length: means.second.layers }, () => ({
      p1: new Column<Float32Array>(),
      p2: new Column<Float32Array>(),
      entropy: new Column<Float32Array>(),
      e1: new Column<Int32Array>(),
      e2: new Column<Int32Array>(),
      dropSecond: new Column<Float32Array>(),
      dropAll: new Column<Float32Array>(),
    }));
  }

  async observe(e: MoeLayerEvent): Promise<void> {
    // The backend runs decoder layer `layer`; means and columns are indexed by MoE layer.
    const { layer, moeLayer, decision, x, probs } = e;
    const { renormalize, routedScalingFactor: scale } = e.plan;
    const n = decision.numTokens;
    const E = this.means.second.experts;
    const H = this.means.second.hidden;
    if (moeLayer === 0) this.tokens += n;
    const e1 = new Int32Array(n);
    const e2 = new Int32Array(n);
    for (let t = 0; t < n; t++) {
      const from = decision.offsets[t]!;
      if (decision.offsets[t + 1]! - from !== 2) {
        throw new RangeError(`drop-cost probe: layer ${layer} token ${t} is not routed to 2 experts`);
      }
      e1[t] = decision.experts[from]!;
      e2[t] = decision.experts[from + 1]!;
    }
    const alone = async (experts: Int32Array): Promise<Float32Array> => {
      const single: ExpertAssignment = {
        numTokens: n,
        offsets: Int32Array.from({ length: n + 1 }, (_, i) => i),
        experts,
        weights: new Float32Array(n).fill(1),
      };
      const out = new Float32Array(n * H);
      await this.backend.compute(layer, x, single, out);
      return out;
    };
    const y1 = await alone(e1);
    const y2 = await alone(e2);
    const p1 = new Float32Array(n);
    const p2 = new Float32Array(n);
    const dropSecond = new Float32Array(n);
    const dropAll = new Float32Array(n);
    this.accumulate(0, moeLayer, e1, y1);
    this.accumulate(1, moeLayer, e2, y2);
    const lead = this.means.lead.data;
    const second = this.means.second.data;
    for (let t = 0; t < n; t++) {
      const a = probs[t * E + e1[t]!]!;
      const b = probs[t * E + e2[t]!]!;
      p1[t] = a;
      p2[t] = b;
      // Native weights under the model's rule (renormalised over the top 2 or raw, then scaled).
      const native = renormalize ? a + b : 1;
      const w1 = (a / native) * scale;
      const w2 = (b / native) * scale;
      const m1 = (moeLayer * E + e1[t]!) * H;
      const m2 = (moeLayer * E + e2[t]!) * H;
      let s2 = 0;
      let s0 = 0;
      for (let i = 0; i < H; i++) {
        const d2 = w2 * (y2[t * H + i]! - second[m2 + i]!);
        const d0 = w1 * (y1[t * H + i]! - lead[m1 + i]!) + d2;
        s2 += d2 * d2;
        s0 += d0 * d0;
      }
      dropSecond[t] = s2;
      dropAll[t] = s0;
    }
    const c = this.columns[moeLayer]!;
    c.p1.push(p1);
    c.p2.push(p2);
    c.entropy.push(Float32Array.from(decision.entropy));
    c.e1.push(e1);
    c.e2.push(e2);
    c.dropSecond.push(dropSecond);
    c.dropAll.push(dropAll);
  }

  private accumulate(rank: 0 | 1, layer: number, experts: Int32Array, y: Float32Array): void {
    const { experts: E, hidden: H } = this.means.second;
    const sums = this.sums[rank];
    const counts = this.counts[rank];
    for (let t = 0; t < experts.length; t++) {
      const le = layer * E + experts[t]!;
      counts[le]!++;
      for (let i = 0; i < H; i++) sums[le * H + i]! += y[t * H + i]!;
    }
  }

  private meansOf(rank: 0 | 1): ExpertMeans {
    const { layers, experts, hidden } = this.means.second;
    const data = new Float32Array(layers * experts * hidden);
    const counts = this.counts[rank];
    for (let le = 0; le < counts.length; le++) {
      if (counts[le] === 0) continue;
      for (let i = 0; i < hidden; i++)
        data[le * hidden + i] = this.sums[rank][le * hidden + i]! / counts[le]!;
    }
    return { layers, experts, hidden, data };
  }

  table(): DropCostTable {
    const f = (n: number) => new Float32Array(n);
    const i = (n: number) => new Int32Array(n);
    return {
      tokens: this.tokens,
      layers: this.columns.map((c) => ({
        p1: c.p1.join(f),
        p2: c.p2.join(f),
        entropy: c.entropy.join(f),
        e1: c.e1.join(i),
        e2: c.e2.join(i),
        dropSecond: c.dropSecond.join(f),
        dropAll: c.dropAll.join(f),
      })),
      leadMeans: this.meansOf(0),
      secondMeans: this.meansOf(1),
    };
  }
}
