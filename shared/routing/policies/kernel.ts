// The loop every top-K-style policy shares: one pass per token computes the router entropy and
// keeps the policy's maxK most probable experts; the policy only decides K from those; the kept
// weights are renormalised (a policy may normalise differently, see skip.ts). Policies subclass
// SelectingPolicy and implement chooseK.

import { RoutingInputError } from '../errors.js';
import type { RouterProbs, RoutingDecision, RoutingModel, RoutingPolicy } from '../policy.js';

/** Keeps the log finite at p = 0 (0 * ln 0 would be NaN); the reference implementation uses the same epsilon. */
const ENTROPY_EPS = 1e-9;
/**
 * How far a row sum may stray from 1. Loose enough for a softmax computed in reduced precision
 * (bf16 rows of 64 experts are off by a few 1e-3), tight enough to catch logits passed as probabilities.
 */
const ROW_SUM_TOLERANCE = 1e-2;

export abstract class SelectingPolicy implements RoutingPolicy {
  readonly spec: string;
  readonly maxK: number;
  protected readonly model: RoutingModel;
  // Scratch reused by every route() call: route() is synchronous, so one instance never interleaves.
  private readonly topExperts: Int32Array;
  private readonly topProbs: Float64Array;

  protected constructor(spec: string, maxK: number, model: RoutingModel) {
    this.spec = spec;
    this.maxK = maxK;
    this.model = model;
    this.topExperts = new Int32Array(maxK);
    this.topProbs = new Float64Array(maxK);
  }

  /**
   * K in 0..maxK for one token at `layer`, given its router entropy (nats, float64, unclamped),
   * its maxK largest probabilities in descending order and their experts. Only policies that carry
   * a prior for skipped experts (allocator) return 0: the token then makes no expert call.
   */
  protected abstract chooseK(
    layer: number,
    entropy: number,
    top: Float64Array,
    topExperts: Int32Array,
  ): number;

  /** Divisor of the kept probabilities: their own sum (weights renormalised to sum 1). */
  protected weightNormaliser(k: number, top: Float64Array): number {
    let kept = 0;
    for (let i = 0; i < k; i++) kept += top[i]!;
    return kept;
  }

  route(input: RouterProbs): RoutingDecision {
    const { layer, numTokens, numExperts, probs } = input;
    this.checkInput(input);
    const maxK = this.maxK;
    const topExperts = this.topExperts;
    const topProbs = this.topProbs;
    const capacity = numTokens * maxK;
    const offsets = new Int32Array(numTokens + 1);
    const experts = new Int32Array(capacity);
    const weights = new Float32Array(capacity);
    const entropy = new Float32Array(numTokens);
    let out = 0;
    for (let t = 0; t < numTokens; t++) {
      const base = t * numExperts;
      let h = 0;
      let sum = 0;
      let filled = 0;
      for (let j = 0; j < numExperts; j++) {
        const p = probs[base + j]!;
        if (!(p >= 0)) throw this.badRow(layer, t, `probability of expert ${j} is ${p}`);
        sum += p;
        h -= p * Math.log(p + ENTROPY_EPS);
        // Insertion into a maxK-long sorted buffer; strict `>` keeps the lower index first on ties.
        let pos: number;
        if (filled < maxK) {
          pos = filled++;
        } else if (p > topProbs[maxK - 1]!) {
          pos = maxK - 1;
        } else {
          continue;
        }
        while (pos > 0 && p > topProbs[pos - 1]!) {
          topProbs[pos] = topProbs[pos - 1]!;
          topExperts[pos] = topExperts[pos - 1]!;
          pos--;
        }
        topProbs[pos] = p;
        topExperts[pos] = j;
      }
      if (Math.abs(sum - 1) > ROW_SUM_TOLERANCE) throw this.badRow(layer, t, `row sums to ${sum}`);
      const k = this.chooseK(layer, h, topProbs, topExperts);
      const norm = this.weightNormaliser(k, topProbs);
      for (let i = 0; i < k; i++) {
        experts[out] = topExperts[i]!;
        weights[out] = topProbs[i]! / norm;
        out++;
      }
      offsets[t + 1] = out;
      // ln(1 + 1e-9) makes a one-hot row -1e-9; statistics want entropy >= 0.
      entropy[t] = Math.max(h, 0);
    }
    // Compact copies so the arrays' buffers hold exactly the decision (they may go on the wire).
    return {
      numTokens,
      offsets,
      experts: out === capacity ? experts : experts.slice(0, out),
      weights: out === capacity ? weights : weights.slice(0, out),
      entropy,
    };
  }

  private checkInput(input: RouterProbs): void {
    const { layer, numTokens, numExperts, probs } = input;
    const { numLayers } = this.model;
    if (!Number.isInteger(layer) || layer < 0 || layer >= numLayers) {
      throw new RoutingInputError(`routing ${this.spec}: layer ${layer} is outside 0..${numLayers - 1}`, {
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
  }

  private badRow(layer: number, token: number, what: string): RoutingInputError {
    return new RoutingInputError(
      `routing ${this.spec}: layer ${layer} token ${token}: ${what}; router probabilities must be a softmax over all experts`,
      { layer, token, hint: 'pass softmax(router logits), not the logits or a top-k subset' },
    );
  }
}
