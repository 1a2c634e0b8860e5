// Calibration probe on the MoE seam for linear substitutes of skipped experts: under native routing
// it runs each token's rank-2 expert alone (weight 1) through the same backend and accumulates, per
// (MoE layer, expert), the sufficient statistics of a least-squares fit of that output from the
// token's expert input: the Gram matrix of [x, 1] and the cross products of [x, 1] with y. Rank 2
// because that is the expert a skip policy leaves out. Doubles rank-2 expert work; calibration only.

import type { ExpertBackend } from '../expert-backend.js';
import type { MoeLayerEvent, MoeObserver } from '../observer.js';
import { secondExpertsAlone } from './second-experts.js';

/** Per (MoE layer, expert), fp64: what a ridge regression of y on [x, 1] needs. */
export interface SubstituteStats {
  readonly layers: number;
  readonly experts: number;
  readonly hidden: number;
  /** [layers * experts] tokens accumulated. */
  readonly counts: Float64Array;
  /** [layers * experts, hidden + 1, hidden + 1]: sum of [x, 1][x, 1]^T (the last index is the constant). */
  readonly gram: Float64Array;
  /** [layers * experts, hidden + 1, hidden]: sum of [x, 1] y^T. */
  readonly cross: Float64Array;
  /** [layers * experts]: sum of ||y||^2 (for the share of variance a fit explains). */
  readonly sumSquares: Float64Array;
}

export class SubstituteStatsProbe implements MoeObserver {
  private readonly stats: SubstituteStats;

  /** `backend` is borrowed (not closed): the probe's extra calls go where the layer's went. */
  constructor(
    private readonly backend: ExpertBackend,
    layers: number,
    experts: number,
    hidden: number,
  ) {
    const D = hidden + 1;
    this.stats = {
      layers,
      experts,
      hidden,
      counts: new Float64Array(layers * experts),
      gram: new Float64Array(layers * experts * D * D),
      cross: new Float64Array(layers * experts * D * hidden),
      sumSquares: new Float64Array(layers * experts),
    };
  }

  async observe(e: MoeLayerEvent): Promise<void> {
    // Experts are computed at the decoder layer; statistics are indexed by MoE layer (as profiles are).
    const { layer, moeLayer, decision, x } = e;
    const { experts: E, hidden: H, counts, gram, cross, sumSquares } = this.stats;
    const D = H + 1;
    const n = decision.numTokens;
    const alone = await secondExpertsAlone(this.backend, layer, x, decision, H);
    if (!alone) return;
    const { offsets, experts: second, y } = alone;
    const a = new Float64Array(D);
    a[H] = 1;
    for (let t = 0; t < n; t++) {
      if (offsets[t + 1] === offsets[t]) continue;
      const le = moeLayer * E + second[offsets[t]!]!;
      for (let i = 0; i < H; i++) a[i] = x.data[t * H + i]!;
      counts[le]!++;
      // The Gram matrix is symmetric: accumulate the upper triangle, mirror it when read.
      const g = le * D * D;
      for (let i = 0; i < D; i++) {
        const ai = a[i]!;
        const row = g + i * D;
        for (let j = i; j < D; j++) gram[row + j]! += ai * a[j]!;
      }
      const c = le * D * H;
      let ss = 0;
      for (let o = 0; o < H; o++) ss += y[t * H + o]! * y[t * H + o]!;
      sumSquares[le]! += ss;
      for (let i = 0; i < D; i++) {
        const ai = a[i]!;
        const row = c + i * H;
        for (let o = 0; o < H; o++) cross[row + o]! += ai * y[t * H + o]!;
      }
    }
  }

  /** The accumulated statistics, the Gram matrices made symmetric. */
  result(): SubstituteStats {
    const { layers, experts, hidden, gram } = this.stats;
    const D = hidden + 1;
    for (let le = 0; le < layers * experts; le++) {
      const g = le * D * D;
      for (let i = 0; i < D; i++) for (let j = 0; j < i; j++) gram[g + i * D + j] = gram[g + j * D + i]!;
    }
    return this.stats;
  }
}
