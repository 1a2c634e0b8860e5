// Expert load per (layer, expert) from real traffic, as an observer of the MoE seam: token-expert
// pairs routed to each expert, in total and as a recent rate (exponentially decayed), which is what
// replica decisions (EPLB-style rebalancing, `--experts auto`) read. Pairs, not tokens: a token
// with K experts loads K of them.

import type { MoeObserver } from '../observer.js';

/** Half-life of the recent rate: long enough to smooth a burst, short enough to follow a shift. */
export const EXPERT_LOAD_HALF_LIFE_S = 60;

export interface ExpertLoadJSON {
  readonly numLayers: number;
  readonly numExperts: number;
  /** pairs[layer][expert]: pairs routed since start. */
  readonly pairs: number[][];
  /** pairsPerSecond[layer][expert]: recent rate, decayed with EXPERT_LOAD_HALF_LIFE_S. */
  readonly pairsPerSecond: number[][];
  /** Per expert, the rate summed over layers (the unit a worker holds: an expert of every layer). */
  readonly expertPairsPerSecond: number[];
}

export class ExpertLoad implements MoeObserver {
  private readonly total: Float64Array;
  /** Decayed pair counts; rate = decayed / (half-life / ln 2). */
  private readonly decayed: Float64Array;
  private last: number;

  constructor(
    readonly numLayers: number,
    readonly numExperts: number,
    private readonly clock: () => number = () => performance.now() / 1000,
  ) {
    this.total = new Float64Array(numLayers * numExperts);
    this.decayed = new Float64Array(numLayers * numExperts);
    this.last = clock();
  }

  observe(e: {
    readonly layer: number;
    readonly decision: {
      readonly numTokens: number;
      readonly offsets: Int32Array;
      readonly experts: Int32Array;
    };
  }): void {
    this.decay();
    const d = e.decision;
    const base = e.layer * this.numExperts;
    for (let j = d.offsets[0]!; j < d.offsets[d.numTokens]!; j++) {
      const i = base + d.experts[j]!;
      this.total[i]!++;
      this.decayed[i]!++;
    }
  }

  toJSON(): ExpertLoadJSON {
    this.decay();
    const tau = EXPERT_LOAD_HALF_LIFE_S / Math.LN2;
    const rows = (a: Float64Array, scale: number) =>
      Array.from({ length: this.numLayers }, (_, l) =>
        Array.from(a.subarray(l * this.numExperts, (l + 1) * this.numExperts), (v) => v * scale),
      );
    const pairsPerSecond = rows(this.decayed, 1 / tau);
    return {
      numLayers: this.numLayers,
      numExperts: this.numExperts,
      pairs: rows(this.total, 1),
      pairsPerSecond,
      expertPairsPerSecond: Array.from({ length: this.numExperts }, (_, e) =>
        pairsPerSecond.reduce((a, row) => a + row[e]!, 0),
      ),
    };
  }

  private decay(): void {
    const now = this.clock();
    const dt = now - this.last;
    if (dt <= 0) return;
    this.last = now;
    const f = 0.5 ** (dt / EXPERT_LOAD_HALF_LIFE_S);
    for (let i = 0; i < this.decayed.length; i++) this.decayed[i]! *= f;
  }
}
