// Running routing statistics per MoE layer: tokens, experts per token (K), expert load and router
// entropy. Plain counters a Prometheus endpoint can export as they are; toJSON() is the wire and
// report format, fromJSON() restores it, merge() combines workers or runs.

import { z } from 'zod';
import { RoutingStatsError } from './errors.js';
import type { RoutingDecision, RoutingModel } from './policy.js';

export const DEFAULT_ENTROPY_BINS = 20;

export interface RoutingStatsOptions extends RoutingModel {
  /** Equal-width entropy bins over [0, ln numExperts]; default 20. */
  readonly entropyBins?: number;
}

/** One layer's counters. Counts are exact integers (stored as doubles: exact up to 2^53). */
export interface RoutingLayerStatsJSON {
  readonly layer: number;
  /** Tokens routed at this layer. */
  readonly tokens: number;
  /** Sum of K over those tokens = expert-token activations. */
  readonly sumK: number;
  /** [numExperts]: kHistogram[i] = tokens that used K = i + 1 experts. */
  readonly kHistogram: number[];
  /** Tokens that used no expert (K = 0, the allocator's prior only); absent in older JSON = 0. */
  readonly zeroK?: number;
  /** [numExperts]: tokens sent to each expert. */
  readonly expertTokens: number[];
  /** [entropyBins]: tokens whose router entropy falls in each bin (see entropyBinUpperEdges). */
  readonly entropyHistogram: number[];
  /** Sum of router entropy in nats. */
  readonly entropySum: number;
}

/**
 * The documented JSON shape of RoutingStats. `summary` is derived from `layers` (fromJSON ignores
 * it); averages are 0 while nothing has been recorded.
 */
export interface RoutingStatsJSON {
  readonly kmoeRoutingStats: 1;
  readonly numLayers: number;
  readonly numExperts: number;
  readonly nativeK: number;
  /**
   * Upper edges (nats) of the entropy bins, last = ln(numExperts). Bin i counts
   * edges[i-1] < H <= edges[i] (bin 0 from 0 inclusive; the last also takes H above ln E), so
   * cumulative sums are Prometheus `le` buckets.
   */
  readonly entropyBinUpperEdges: number[];
  readonly layers: RoutingLayerStatsJSON[];
  readonly summary: {
    /** Token-layer pairs: a token passing 32 MoE layers counts 32 times. */
    readonly tokens: number;
    readonly activations: number;
    /** tokens * nativeK: what native top-K routing would have run. */
    readonly nativeActivations: number;
    readonly avgK: number;
    /** 1 - activations / nativeActivations. */
    readonly saving: number;
    readonly avgKPerLayer: number[];
    readonly meanEntropyPerLayer: number[];
  };
}

const count = z.number().int().min(0);

const statsJSONSchema = z
  .object({
    kmoeRoutingStats: z.literal(1),
    numLayers: z.number().int().min(1),
    numExperts: z.number().int().min(1),
    nativeK: z.number().int().min(1),
    entropyBinUpperEdges: z.array(z.number()).min(1),
    layers: z.array(
      z.object({
        layer: z.number().int().min(0),
        tokens: count,
        sumK: count,
        kHistogram: z.array(count),
        zeroK: count.optional(),
        expertTokens: z.array(count),
        entropyHistogram: z.array(count),
        entropySum: z.number().min(0),
      }),
    ),
    summary: z.unknown().optional(),
  })
  .superRefine((json, ctx) => {
    const { numLayers, numExperts } = json;
    const bins = json.entropyBinUpperEdges.length;
    if (json.nativeK > numExperts) ctx.addIssue({ code: 'custom', message: 'nativeK exceeds numExperts' });
    if (json.layers.length !== numLayers)
      ctx.addIssue({ code: 'custom', message: `${json.layers.length} layers, expected ${numLayers}` });
    json.layers.forEach((l, i) => {
      const problems: string[] = [];
      if (l.layer !== i) problems.push(`layer field ${l.layer} at position ${i}`);
      if (l.kHistogram.length !== numExperts) problems.push(`kHistogram has ${l.kHistogram.length} entries`);
      if (l.expertTokens.length !== numExperts)
        problems.push(`expertTokens has ${l.expertTokens.length} entries`);
      if (l.entropyHistogram.length !== bins)
        problems.push(`entropyHistogram has ${l.entropyHistogram.length} bins`);
      // The counters are redundant on purpose: a mismatch means the JSON was edited or truncated.
      const kTokens = l.kHistogram.reduce((a, b) => a + b, l.zeroK ?? 0);
      const kSum = l.kHistogram.reduce((a, b, k) => a + b * (k + 1), 0);
      const expertSum = l.expertTokens.reduce((a, b) => a + b, 0);
      const entropyTokens = l.entropyHistogram.reduce((a, b) => a + b, 0);
      if (kTokens !== l.tokens || entropyTokens !== l.tokens)
        problems.push(`histograms count ${kTokens} / ${entropyTokens} tokens, tokens is ${l.tokens}`);
      if (kSum !== l.sumK || expertSum !== l.sumK)
        problems.push(`kHistogram implies sumK ${kSum}, expertTokens ${expertSum}, sumK is ${l.sumK}`);
      for (const message of problems) ctx.addIssue({ code: 'custom', message, path: ['layers', i] });
    });
  });

export class RoutingStats {
  readonly numLayers: number;
  readonly numExperts: number;
  readonly nativeK: number;
  readonly entropyBins: number;
  /** Width of one entropy bin in nats (0 for a single expert, whose entropy is always 0). */
  private readonly binWidth: number;
  private readonly tokensPerLayer: Float64Array;
  private readonly sumK: Float64Array;
  /** [numLayers * numExperts], index layer * E + (K - 1). */
  private readonly kHistogram: Float64Array;
  /** [numLayers]: tokens with K = 0. */
  private readonly zeroK: Float64Array;
  /** [numLayers * numExperts]. */
  private readonly expertTokens: Float64Array;
  /** [numLayers * entropyBins]. */
  private readonly entropyHistogram: Float64Array;
  private readonly entropySum: Float64Array;

  constructor(options: RoutingStatsOptions) {
    const { numLayers, numExperts, nativeK, entropyBins = DEFAULT_ENTROPY_BINS } = options;
    if (!Number.isInteger(numLayers) || numLayers < 1)
      throw new RoutingStatsError(`numLayers ${numLayers} < 1`);
    if (!Number.isInteger(numExperts) || numExperts < 1)
      throw new RoutingStatsError(`numExperts ${numExperts} < 1`);
    if (!Number.isInteger(nativeK) || nativeK < 1 || nativeK > numExperts)
      throw new RoutingStatsError(`nativeK ${nativeK} is not in 1..${numExperts}`);
    if (!Number.isInteger(entropyBins) || entropyBins < 1)
      throw new RoutingStatsError(`entropyBins ${entropyBins} < 1`);
    this.numLayers = numLayers;
    this.numExperts = numExperts;
    this.nativeK = nativeK;
    this.entropyBins = entropyBins;
    this.binWidth = Math.log(numExperts) / entropyBins;
    this.tokensPerLayer = new Float64Array(numLayers);
    this.sumK = new Float64Array(numLayers);
    this.kHistogram = new Float64Array(numLayers * numExperts);
    this.zeroK = new Float64Array(numLayers);
    this.expertTokens = new Float64Array(numLayers * numExperts);
    this.entropyHistogram = new Float64Array(numLayers * entropyBins);
    this.entropySum = new Float64Array(numLayers);
  }

  /** Adds one layer's decision for a batch. */
  record(layer: number, decision: RoutingDecision): void {
    const E = this.numExperts;
    const bins = this.entropyBins;
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.numLayers)
      throw new RoutingStatsError(`layer ${layer} is outside 0..${this.numLayers - 1}`);
    const { numTokens, offsets, experts, entropy } = decision;
    let sumK = 0;
    let entropySum = 0;
    for (let t = 0; t < numTokens; t++) {
      const from = offsets[t]!;
      const k = offsets[t + 1]! - from;
      if (!(k >= 0 && k <= E))
        throw new RoutingStatsError(`layer ${layer} token ${t}: K = ${k} outside 0..${E}`);
      sumK += k;
      if (k === 0) this.zeroK[layer]!++;
      else this.kHistogram[layer * E + k - 1]!++;
      for (let i = from; i < from + k; i++) {
        const e = experts[i]!;
        if (!(e >= 0 && e < E))
          throw new RoutingStatsError(`layer ${layer} token ${t}: expert ${e} outside 0..${E - 1}`);
        this.expertTokens[layer * E + e]!++;
      }
      const h = Math.max(0, entropy[t]!);
      entropySum += h;
      this.entropyHistogram[layer * bins + this.entropyBin(h)]!++;
    }
    this.tokensPerLayer[layer]! += numTokens;
    this.sumK[layer]! += sumK;
    this.entropySum[layer]! += entropySum;
  }

  /** Bin i holds edges[i-1] < h <= edges[i]: matches Prometheus `le` buckets after a cumulative sum. */
  private entropyBin(h: number): number {
    if (this.binWidth === 0) return 0;
    const bin = Math.ceil(h / this.binWidth) - 1;
    return bin < 0 ? 0 : bin >= this.entropyBins ? this.entropyBins - 1 : bin;
  }

  /** Adds another instance's counters into this one (same model shape and bins); returns this. */
  merge(other: RoutingStats): this {
    for (const field of ['numLayers', 'numExperts', 'nativeK', 'entropyBins'] as const) {
      if (this[field] !== other[field])
        throw new RoutingStatsError(`cannot merge routing stats: ${field} ${this[field]} vs ${other[field]}`);
    }
    addInto(this.tokensPerLayer, other.tokensPerLayer);
    addInto(this.sumK, other.sumK);
    addInto(this.kHistogram, other.kHistogram);
    addInto(this.zeroK, other.zeroK);
    addInto(this.expertTokens, other.expertTokens);
    addInto(this.entropyHistogram, other.entropyHistogram);
    addInto(this.entropySum, other.entropySum);
    return this;
  }

  /** Token-layer pairs routed. */
  tokens(): number {
    return sum(this.tokensPerLayer);
  }

  /** Expert-token activations: sum of K over every token and layer. */
  activations(): number {
    return sum(this.sumK);
  }

  nativeActivations(): number {
    return this.tokens() * this.nativeK;
  }

  avgK(): number {
    const tokens = this.tokens();
    return tokens === 0 ? 0 : this.activations() / tokens;
  }

  avgKPerLayer(): number[] {
    return Array.from(this.sumK, (s, l) => ratio(s, this.tokensPerLayer[l]!));
  }

  /** Fraction of native expert computation avoided (negative when routing spends more than native). */
  saving(): number {
    const native = this.nativeActivations();
    return native === 0 ? 0 : 1 - this.activations() / native;
  }

  meanEntropyPerLayer(): number[] {
    return Array.from(this.entropySum, (s, l) => ratio(s, this.tokensPerLayer[l]!));
  }

  entropyBinUpperEdges(): number[] {
    const lnE = Math.log(this.numExperts);
    // The last edge is ln E exactly rather than width * bins, which can round below it.
    return Array.from({ length: this.entropyBins }, (_, i) =>
      i === this.entropyBins - 1 ? lnE : this.binWidth * (i + 1),
    );
  }

  toJSON(): RoutingStatsJSON {
    const E = this.numExperts;
    const bins = this.entropyBins;
    const layers = Array.from(
      { length: this.numLayers },
      (_, l): RoutingLayerStatsJSON => ({
        layer: l,
        tokens: this.tokensPerLayer[l]!,
        sumK: this.sumK[l]!,
        kHistogram: Array.from(this.kHistogram.subarray(l * E, (l + 1) * E)),
        zeroK: this.zeroK[l]!,
        expertTokens: Array.from(this.expertTokens.subarray(l * E, (l + 1) * E)),
        entropyHistogram: Array.from(this.entropyHistogram.subarray(l * bins, (l + 1) * bins)),
        entropySum: this.entropySum[l]!,
      }),
    );
    return {
      kmoeRoutingStats: 1,
      numLayers: this.numLayers,
      numExperts: E,
      nativeK: this.nativeK,
      entropyBinUpperEdges: this.entropyBinUpperEdges(),
      layers,
      summary: {
        tokens: this.tokens(),
        activations: this.activations(),
        nativeActivations: this.nativeActivations(),
        avgK: this.avgK(),
        saving: this.saving(),
        avgKPerLayer: this.avgKPerLayer(),
        meanEntropyPerLayer: this.meanEntropyPerLayer(),
      },
    };
  }

  /** Restores toJSON() output; the counters are validated for consistency, the summary is recomputed. */
  static fromJSON(json: unknown): RoutingStats {
    const result = statsJSONSchema.safeParse(json);
    if (!result.success)
      throw new RoutingStatsError(`invalid routing stats JSON:\n${z.prettifyError(result.error)}`);
    const data = result.data;
    const { numLayers, numExperts, nativeK } = data;
    const stats = new RoutingStats({
      numLayers,
      numExperts,
      nativeK,
      entropyBins: data.entropyBinUpperEdges.length,
    });
    const edges = stats.entropyBinUpperEdges();
    data.entropyBinUpperEdges.forEach((edge, i) => {
      // Bins are always equal-width over [0, ln E]; other edges would mean counts binned differently.
      if (Math.abs(edge - edges[i]!) > 1e-9)
        throw new RoutingStatsError(
          `entropyBinUpperEdges[${i}] = ${edge}, expected ${edges[i]} (equal bins over [0, ln E])`,
        );
    });
    const E = data.numExperts;
    const bins = stats.entropyBins;
    for (const l of data.layers) {
      stats.tokensPerLayer[l.layer] = l.tokens;
      stats.sumK[l.layer] = l.sumK;
      stats.kHistogram.set(l.kHistogram, l.layer * E);
      stats.zeroK[l.layer] = l.zeroK ?? 0;
      stats.expertTokens.set(l.expertTokens, l.layer * E);
      stats.entropyHistogram.set(l.entropyHistogram, l.layer * bins);
      stats.entropySum[l.layer] = l.entropySum;
    }
    return stats;
  }
}

function addInto(target: Float64Array, source: Float64Array): void {
  for (let i = 0; i < target.length; i++) target[i]! += source[i]!;
}

function sum(values: Float64Array): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}

function ratio(numerator: number, denominator: number): number {
  return denominator === 0 ? 0 : numerator / denominator;
}
