// The loop every top-K-style policy shares: one pass per token computes the router entropy and
// keeps the policy's maxK best-ranked experts under the model's native rule (RouterRule: softmax or
// sigmoid scores, selection bias, group-limited selection); the policy only decides K from those;
// the kept weights follow the rule (renormalised or raw scores, times the routed scaling factor;
// a policy may normalise differently, see skip.ts). Policies subclass SelectingPolicy and implement chooseK.

import { RoutingInputError } from '../errors.js';
import type { ExpertMeans } from '../expert-means.js';
import { addSubstitute, type ExpertSubstitutes, type SubstituteBatchKernel } from '../expert-substitutes.js';
import {
  type RouterProbs,
  type RouterRule,
  type RoutingDecision,
  type RoutingModel,
  type RoutingPolicy,
  SOFTMAX_RENORMALISED,
} from '../policy.js';

/** Keeps the log finite at p = 0 (0 * ln 0 would be NaN); the reference implementation uses the same epsilon. */
const ENTROPY_EPS = 1e-9;
/**
 * How far a softmax row sum may stray from 1. Loose enough for a softmax computed in reduced
 * precision (bf16 rows of 64 experts are off by a few 1e-3), tight enough to catch logits passed as probabilities.
 */
const ROW_SUM_TOLERANCE = 1e-2;
/** transformers adds this to the kept sigmoid scores' sum before dividing (DeepSeek-V3 norm_topk_prob). */
const SIGMOID_NORM_EPS = 1e-20;

/** The maxK candidates of every token of the last route() call, in ranking order. */
export interface RoutedCandidates {
  /** [numTokens * maxK] expert ids. */
  readonly experts: Int32Array;
  /** [numTokens * maxK] their raw gate scores (the basis of the weights). */
  readonly scores: Float64Array;
}

export abstract class SelectingPolicy implements RoutingPolicy {
  readonly spec: string;
  readonly maxK: number;
  protected readonly model: RoutingModel;
  protected readonly rule: RouterRule;
  // Scratch reused by every route() call: route() is synchronous, so one instance never interleaves.
  private readonly topExperts: Int32Array;
  private readonly topRank: Float64Array;
  /** Normalised scores of the candidates (what chooseK sees). */
  private readonly topMass: Float64Array;
  /** Raw gate scores of the candidates (what weights are made of). */
  protected readonly topRaw: Float64Array;
  private readonly eligible: Uint8Array;
  private readonly groupScores: Float64Array;
  /** Whether chooseK may return 0 (only policies whose prior stands in for every dropped expert). */
  protected readonly zeroK: boolean = false;

  protected constructor(spec: string, maxK: number, model: RoutingModel) {
    this.spec = spec;
    this.maxK = maxK;
    this.model = model;
    this.rule = model.rule ?? SOFTMAX_RENORMALISED;
    this.topExperts = new Int32Array(maxK);
    this.topRank = new Float64Array(maxK);
    this.topMass = new Float64Array(maxK);
    this.topRaw = new Float64Array(maxK);
    this.eligible = new Uint8Array(model.numExperts);
    this.groupScores = new Float64Array(this.rule.groups?.numGroups ?? 0);
  }

  /**
   * K in 0..maxK for one token at MoE layer `layer`, given its router entropy (nats, float64,
   * unclamped, over the normalised scores), its maxK candidates' normalised scores in ranking order
   * and their experts. Only policies that carry a prior for skipped experts (`zeroK = true`, the
   * allocator) may return 0: the token then makes no expert call.
   */
  protected abstract chooseK(
    layer: number,
    entropy: number,
    top: Float64Array,
    topExperts: Int32Array,
  ): number;

  /**
   * Divisor of the kept raw scores: under a renormalising rule their own sum (+1e-20 for a sigmoid
   * gate), else 1 (the weights are the scores themselves).
   */
  protected weightNormaliser(k: number, raw: Float64Array): number {
    if (!this.rule.renormalize) return 1;
    let kept = this.rule.gate === 'sigmoid' ? SIGMOID_NORM_EPS : 0;
    for (let i = 0; i < k; i++) kept += raw[i]!;
    return kept;
  }

  /** Runs the selection and also returns every token's maxK candidates (for priors of skipped experts). */
  protected routeWithCandidates(input: RouterProbs): {
    decision: RoutingDecision;
    candidates: RoutedCandidates;
  } {
    const { layer, numTokens, numExperts, probs } = input;
    this.checkInput(input);
    const rule = this.rule;
    const sigmoid = rule.gate === 'sigmoid';
    const rank = rule.selectionBias ? input.select! : probs;
    const scale = rule.routedScalingFactor;
    const maxK = this.maxK;
    const { topExperts, topRank, topMass, topRaw, eligible } = this;
    const capacity = numTokens * maxK;
    const offsets = new Int32Array(numTokens + 1);
    const experts = new Int32Array(capacity);
    const weights = new Float32Array(capacity);
    const entropy = new Float32Array(numTokens);
    const candExperts = new Int32Array(capacity);
    const candScores = new Float64Array(capacity);
    let out = 0;
    for (let t = 0; t < numTokens; t++) {
      const base = t * numExperts;
      let sum = 0;
      for (let j = 0; j < numExperts; j++) {
        const p = probs[base + j]!;
        if (!(p >= 0) || (sigmoid && !(p <= 1))) throw this.badRow(layer, t, `score of expert ${j} is ${p}`);
        sum += p;
      }
      if (!sigmoid && Math.abs(sum - 1) > ROW_SUM_TOLERANCE)
        throw this.badRow(layer, t, `row sums to ${sum}`);
      // Softmax rows are measured as they are (bit-identical to the pre-rule kernel); sigmoid rows
      // are normalised to a distribution first.
      const massScale = sigmoid ? (sum > 0 ? 1 / sum : 0) : 1;
      let h = 0;
      for (let j = 0; j < numExperts; j++) {
        const m = probs[base + j]! * massScale;
        h -= m * Math.log(m + ENTROPY_EPS);
      }
      this.markEligible(rank, base, layer, t);
      let filled = 0;
      for (let j = 0; j < numExperts; j++) {
        if (eligible[j] === 0) continue;
        const r = rank[base + j]!;
        if (!Number.isFinite(r)) throw this.badRow(layer, t, `selection score of expert ${j} is ${r}`);
        // Insertion into a maxK-long sorted buffer; strict `>` keeps the lower index first on ties.
        let pos: number;
        if (filled < maxK) {
          pos = filled++;
        } else if (r > topRank[maxK - 1]!) {
          pos = maxK - 1;
        } else {
          continue;
        }
        while (pos > 0 && r > topRank[pos - 1]!) {
          topRank[pos] = topRank[pos - 1]!;
          topExperts[pos] = topExperts[pos - 1]!;
          pos--;
        }
        topRank[pos] = r;
        topExperts[pos] = j;
      }
      for (let i = 0; i < maxK; i++) {
        const p = probs[base + topExperts[i]!]!;
        topRaw[i] = p;
        topMass[i] = p * massScale;
        candExperts[t * maxK + i] = topExperts[i]!;
        candScores[t * maxK + i] = p;
      }
      const k = this.chooseK(layer, h, topMass, topExperts);
      if (!(Number.isInteger(k) && k >= (this.zeroK ? 0 : 1) && k <= maxK)) {
        throw new RangeError(
          `routing ${this.spec}: chose K = ${k} at layer ${layer}, outside ${this.zeroK ? 0 : 1}..${maxK}`,
        );
      }
      const norm = this.weightNormaliser(k, topRaw);
      for (let i = 0; i < k; i++) {
        experts[out] = topExperts[i]!;
        weights[out] = scale === 1 ? topRaw[i]! / norm : (topRaw[i]! / norm) * scale;
        out++;
      }
      offsets[t + 1] = out;
      // ln(1 + 1e-9) makes a one-hot row -1e-9; statistics want entropy >= 0.
      entropy[t] = Math.max(h, 0);
    }
    // Compact copies so the arrays' buffers hold exactly the decision (they may go on the wire).
    return {
      decision: {
        numTokens,
        offsets,
        experts: out === capacity ? experts : experts.slice(0, out),
        weights: out === capacity ? weights : weights.slice(0, out),
        entropy,
      },
      candidates: { experts: candExperts, scores: candScores },
    };
  }

  route(input: RouterProbs): RoutingDecision {
    return this.routeWithCandidates(input).decision;
  }

  /**
   * Marks the experts a token may choose: all of them, or with group-limited routing those of the
   * topKGroups best groups (ties: lower group first).
   */
  private markEligible(rank: Float32Array, base: number, layer: number, t: number): void {
    const groups = this.rule.groups;
    const E = this.model.numExperts;
    if (groups === undefined) {
      this.eligible.fill(1);
      return;
    }
    const size = E / groups.numGroups;
    const scores = this.groupScores;
    for (let g = 0; g < groups.numGroups; g++) {
      let best = Number.NEGATIVE_INFINITY;
      let second = Number.NEGATIVE_INFINITY;
      for (let i = g * size; i < (g + 1) * size; i++) {
        const r = rank[base + i]!;
        if (r > best) {
          second = best;
          best = r;
        } else if (r > second) second = r;
      }
      scores[g] = this.rule.selectionBias && size >= 2 ? best + second : best;
      if (Number.isNaN(scores[g]!)) throw this.badRow(layer, t, `group ${g} has a NaN selection score`);
    }
    this.eligible.fill(0);
    const taken = new Uint8Array(groups.numGroups);
    for (let n = 0; n < groups.topKGroups; n++) {
      let pick = -1;
      for (let g = 0; g < groups.numGroups; g++) {
        if (taken[g] === 0 && (pick < 0 || scores[g]! > scores[pick]!)) pick = g;
      }
      taken[pick] = 1;
      this.eligible.fill(1, pick * size, (pick + 1) * size);
    }
  }

  private checkInput(input: RouterProbs): void {
    const { layer, numTokens, numExperts, probs } = input;
    const { numLayers } = this.model;
    if (!Number.isInteger(layer) || layer < 0 || layer >= numLayers) {
      throw new RoutingInputError(`routing ${this.spec}: MoE layer ${layer} is outside 0..${numLayers - 1}`, {
        layer,
      });
    }
    if (numExperts !== this.model.numExperts) {
      throw new RoutingInputError(
        `routing ${this.spec}: layer ${layer} has ${numExperts} experts but the policy was built for ${this.model.numExperts}`,
        { layer, hint: 'resolve the routing policy with the model that produced these router probabilities' },
      );
    }
    if (!Number.isInteger(numTokens) || numTokens < 0 || probs.length !== numTokens * numExperts) {
      throw new RoutingInputError(
        `routing ${this.spec}: layer ${layer} probs has ${probs.length} values, expected numTokens ${numTokens} x numExperts ${numExperts}`,
        { layer },
      );
    }
    if (this.rule.selectionBias && input.select?.length !== probs.length) {
      throw new RoutingInputError(
        `routing ${this.spec}: layer ${layer} needs selection scores (router_select) of ${probs.length} values, got ${input.select?.length ?? 'none'}`,
        { layer, hint: 'a rule with a selection bias ranks experts by router_select' },
      );
    }
  }

  private badRow(layer: number, token: number, what: string): RoutingInputError {
    const gate = this.rule.gate;
    const spec = this.spec; // not `this`: a kept error must not keep the policy and its tables alive
    const describe = (t: number) =>
      `routing ${spec}: layer ${layer} token ${t}: ${what}; router scores must be ${gate === 'softmax' ? 'a softmax' : 'sigmoid scores'} over all experts`;
    return new RoutingInputError(describe(token), {
      layer,
      token,
      describe,
      hint:
        gate === 'softmax'
          ? 'pass softmax(router logits), not the logits or a top-k subset'
          : 'pass sigmoid(router logits), not the logits',
    });
  }
}

/** What stands in for a skipped expert: its calibrated mean output, or a linear substitute of its input. */
export type SkippedExpertEstimate =
  | { readonly kind: 'mean'; readonly means: ExpertMeans }
  | { readonly kind: 'linear'; readonly substitutes: ExpertSubstitutes };

/** What `skippedExpertPrior` needs besides the decision: the policy's native weights and estimates. */
export interface PriorSource {
  /** Native K: the candidates per token. */
  readonly K: number;
  /** The rule's divisor of the native top-K raw scores (SelectingPolicy.weightNormaliser(K, raw)). */
  readonly normaliser: (raw: Float64Array) => number;
  /** The rule's routed scaling factor. */
  readonly scale: number;
  /** Estimates by candidate rank; ranks past the end use the last one. */
  readonly estimates: readonly SkippedExpertEstimate[];
  /** Applies a layer's linear substitutes to the batch at once (RoutingModel.substituteKernel). */
  readonly kernel?: SubstituteBatchKernel;
}

/**
 * Skipped pairs from which a batch's substitutes go through the batch kernel: one graph call costs
 * about as much as one pair in JS (15 vs 8-22 us at hidden 256, rank 32; 4 rows 23 us, 16 rows 50),
 * so from two pairs on the call wins, and a single decode stream (at most one skipped pair per
 * token and layer at K = 2) keeps the JS path.
 */
const BATCH_KERNEL_MIN_PAIRS = 2;

/**
 * Native weight x estimated output of every native top-K candidate the decision left out (the
 * decision keeps a prefix of the candidates, possibly empty, K = 0). Native weight = raw score / the
 * rule's normaliser x the routed scaling factor. The estimate is the expert's mean output or its
 * linear substitute applied to the token's expert input (`input.x`, required then). The one prior
 * of every policy that stands in for skipped experts.
 */
export function skippedExpertPrior(
  input: RouterProbs,
  decision: RoutingDecision,
  candidates: RoutedCandidates,
  source: PriorSource,
): Float32Array {
  const { numTokens, numExperts: E, layer } = input;
  const { K, scale, estimates } = source;
  const first = estimates[0]!;
  const H = first.kind === 'mean' ? first.means.hidden : first.substitutes.hidden;
  const linear = estimates.find((e) => e.kind === 'linear');
  const x = input.x;
  if (linear && x?.length !== numTokens * H) {
    throw new RoutingInputError(
      `routing: layer ${layer} replaces skipped experts by linear substitutes of the expert input; it needs x of ${numTokens} x ${H} values, got ${x?.length ?? 'none'}`,
      { layer, hint: "pass the MoE layer's expert input rows as RouterProbs.x" },
    );
  }
  const prior = new Float32Array(numTokens * H);
  const raw = new Float64Array(K);
  /** f(rank, expert, native weight) for each candidate of token t the decision left out, in rank order. */
  const eachSkipped = (t: number, f: (rank: number, expert: number, w: number) => void): void => {
    const kept = decision.offsets[t + 1]! - decision.offsets[t]!;
    if (kept >= K) return;
    for (let r = 0; r < K; r++) raw[r] = candidates.scores[t * K + r]!;
    const norm = source.normaliser(raw);
    for (let r = kept; r < K; r++) f(r, candidates.experts[t * K + r]!, (raw[r]! / norm) * scale);
  };
  const z = new Float64Array(linear ? linear.substitutes.rank : 0);
  const addLinear = (s: ExpertSubstitutes, t: number, expert: number, w: number): void => {
    addSubstitute(s, layer, expert, w, x!, t * H, prior, t * H, z);
    if (!Number.isFinite(rowSum(prior, t * H, H))) throw notFinite(layer, t, expert);
  };
  if (
    linear &&
    source.kernel &&
    estimates.length === 1 &&
    skippedPairs(decision, K) >= BATCH_KERNEL_MIN_PAIRS
  ) {
    const { substitutes } = linear;
    const weights = new Float32Array(numTokens * E);
    for (let t = 0; t < numTokens; t++) {
      eachSkipped(t, (_, e, w) => {
        weights[t * E + e] = w;
      });
    }
    source.kernel.apply(substitutes, layer, numTokens, x!, weights, prior);
    // The kernel projects every row on every expert before the skip weights pick, so one expert
    // whose substitute overflows on a row poisons it (inf x 0 = NaN) even where it is not skipped:
    // such rows are recomputed pair by pair, so a request fails only for the experts it skips, as
    // it does alone, whatever its batch.
    for (let t = 0; t < numTokens; t++) {
      if (Number.isFinite(rowSum(prior, t * H, H))) continue;
      prior.fill(0, t * H, (t + 1) * H);
      eachSkipped(t, (_, e, w) => addLinear(substitutes, t, e, w));
    }
    return prior;
  }
  for (let t = 0; t < numTokens; t++) {
    eachSkipped(t, (r, expert, w) => {
      const estimate = estimates[Math.min(r, estimates.length - 1)]!;
      if (estimate.kind === 'linear') {
        addLinear(estimate.substitutes, t, expert, w);
        return;
      }
      const table = estimate.means.data;
      const mean = (layer * E + expert) * H;
      for (let i = 0; i < H; i++) prior[t * H + i]! += w * table[mean + i]!;
    });
  }
  return prior;
}

/** The candidates every token of the decision left out, counted. */
function skippedPairs(decision: RoutingDecision, K: number): number {
  let pairs = 0;
  for (let t = 0; t < decision.numTokens; t++)
    pairs += Math.max(0, K - (decision.offsets[t + 1]! - decision.offsets[t]!));
  return pairs;
}

// Finite tables can still overflow on a real input; name the profile, not the router.
function notFinite(layer: number, token: number, expert: number): RoutingInputError {
  const describe = (t: number) =>
    `routing: layer ${layer} token ${t}: the linear substitute of expert ${expert} is not finite for this input; the profile's expertSubstitutes values are too large`;
  return new RoutingInputError(describe(token), {
    layer,
    token,
    describe,
    hint: 're-run kmoe calibrate --substitute-rank to refit the substitutes',
  });
}

function rowSum(a: Float32Array, at: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[at + i]!;
  return s;
}
