// Calibration probe on the MoE seam: besides the normal combine, it runs each token's rank-2 expert
// alone (weight 1) through the same backend and accumulates every (layer, expert)'s mean output —
// the prior a skip profile adds in place of skipped experts. Doubles rank-2 expert work; calibration only.

import type { ExpertMeans } from '../../../shared/routing/expert-means.js';
import type { ExpertBackend } from '../expert-backend.js';
import type { MoeLayerEvent, MoeObserver } from '../observer.js';
import { secondExpertsAlone } from './second-experts.js';

export class ExpertMeanProbe implements MoeObserver {
  private readonly sums: Float64Array;
  private readonly counts: Float64Array;

  /** `backend` is borrowed (not closed): the probe's extra calls go where the layer's went. */
  constructor(
    private readonly backend: ExpertBackend,
    private readonly layers: number,
    private readonly experts: number,
    private readonly hidden: number,
  ) {
    this.sums = new Float64Array(layers * experts * hidden);
    this.counts = new Float64Array(layers * experts);
  }

  async observe(e: MoeLayerEvent): Promise<void> {
    // Experts are computed at the decoder layer; means are indexed by MoE layer (as profiles are).
    const { layer, moeLayer, decision, x } = e;
    const n = decision.numTokens;
    const H = this.hidden;
    const result = await secondExpertsAlone(this.backend, layer, x, decision, H);
    if (!result) return;
    const { offsets, experts, y: alone } = result;
    for (let t = 0; t < n; t++) {
      if (offsets[t + 1] === offsets[t]) continue;
      const ex = experts[offsets[t]!]!;
      const at = (moeLayer * this.experts + ex) * H;
      this.counts[moeLayer * this.experts + ex]!++;
      for (let i = 0; i < H; i++) this.sums[at + i]! += alone[t * H + i]!;
    }
  }

  means(): ExpertMeans {
    const data = new Float32Array(this.sums.length);
    for (let le = 0; le < this.counts.length; le++) {
      const c = this.counts[le]!;
      if (c === 0) continue;
      for (let i = 0; i < this.hidden; i++) data[le * this.hidden + i] = this.sums[le * this.hidden + i]! / c;
    }
    return { layers: this.layers, experts: this.experts, hidden: this.hidden, data };
  }
}
