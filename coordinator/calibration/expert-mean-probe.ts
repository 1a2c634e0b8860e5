// Calibration probe wrapped around an expert backend: besides the normal combine, it runs each
// token's rank-2 expert alone (weight 1) and accumulates every (layer, expert)'s mean output — the
// prior a skip profile adds in place of skipped experts. Doubles rank-2 expert work; calibration only.

import type { TokenExpertPairs } from '../../shared/onnx/expert-host.js';
import type { ExpertMeans } from '../../shared/routing/expert-means.js';
import type { F32Tensor } from '../../shared/tensor.js';
import type { ExpertBackend } from '../engine/expert-backend.js';

export class ExpertMeanProbe implements ExpertBackend {
  readonly description: string;
  readonly wantsNativeBaseline: boolean;
  private readonly sums: Float64Array;
  private readonly counts: Float64Array;

  constructor(
    private readonly inner: ExpertBackend,
    private readonly layers: number,
    private readonly experts: number,
    private readonly hidden: number,
  ) {
    this.description = `${inner.description} (probing expert means)`;
    this.wantsNativeBaseline = inner.wantsNativeBaseline;
    this.sums = new Float64Array(layers * experts * hidden);
    this.counts = new Float64Array(layers * experts);
  }

  async compute(
    layer: number,
    x: F32Tensor,
    pairs: TokenExpertPairs,
    accumulate: Float32Array,
    tokenBytes: Float64Array,
    native?: TokenExpertPairs,
  ): Promise<void> {
    const n = pairs.numTokens;
    const H = this.hidden;
    const offsets = new Int32Array(n + 1);
    const experts: number[] = [];
    for (let t = 0; t < n; t++) {
      if (pairs.offsets[t + 1]! - pairs.offsets[t]! >= 2) experts.push(pairs.experts[pairs.offsets[t]! + 1]!);
      offsets[t + 1] = experts.length;
    }
    const alone = new Float32Array(n * H);
    const single: TokenExpertPairs = {
      numTokens: n,
      offsets,
      experts: Int32Array.from(experts),
      weights: new Float32Array(experts.length).fill(1),
    };
    await this.inner.compute(layer, x, single, alone, new Float64Array(n));
    for (let t = 0; t < n; t++) {
      if (offsets[t + 1] === offsets[t]) continue;
      const e = experts[offsets[t]!]!;
      const at = (layer * this.experts + e) * H;
      this.counts[layer * this.experts + e]!++;
      for (let i = 0; i < H; i++) this.sums[at + i]! += alone[t * H + i]!;
    }
    await this.inner.compute(layer, x, pairs, accumulate, tokenBytes, native);
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

  /** Inner backend stays open: the probe only borrows it. */
  async close(): Promise<void> {}
}
