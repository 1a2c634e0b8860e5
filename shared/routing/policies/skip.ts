// `skip:TAU` — native-weight expert skipping: start from the model's native top-K with its native
// weights (p_i over the sum of the native top-K), then drop every expert below rank 1 whose native
// weight is under TAU. Kept experts keep their native weights, NOT renormalised: the layer's output
// is the native output minus the skipped terms. Measured on the demo model, renormalising after a
// skip doubles the perplexity cost at the same saving (README "Adaptive K"), because it scales up
// the kept expert instead of only removing the small one. TAU may be one value per layer.
// With calibrated expert means (profiles only), each skipped expert is replaced by its native
// weight times its mean output: a prior the combine step adds at no expert or network cost.

import { z } from 'zod';
import { decodeExpertMeans, type ExpertMeans, expertMeansSchema } from '../expert-means.js';
import type { RouterProbs, RoutingDecision, RoutingModel } from '../policy.js';
import { SelectingPolicy } from './kernel.js';
import {
  checkLayerCount,
  type PolicyKind,
  paramName,
  perLayerValues,
  validatePolicy,
} from './policy-kind.js';
import { formatSpecNumber, parseSpecNumber } from './spec-syntax.js';

export const skipSchema = z
  .object({
    kind: z.literal('skip'),
    /** Threshold on an expert's native weight: one value, or one per layer. */
    tau: z.union([z.number(), z.array(z.number())]),
    /** Mean output of every (layer, expert), added in place of skipped experts. */
    expertMeans: expertMeansSchema.optional(),
  })
  .strict()
  .superRefine((config, ctx) => {
    for (const message of checkSkip(config)) ctx.addIssue({ code: 'custom', message });
  });

export type SkipConfig = z.infer<typeof skipSchema>;

function checkSkip(config: SkipConfig, model?: RoutingModel): string[] {
  const perLayer = typeof config.tau !== 'number';
  const values = perLayer ? (config.tau as number[]) : [config.tau as number];
  const problems = perLayer ? checkLayerCount('tau', values.length, model) : [];
  values.forEach((value, layer) => {
    // A native weight is at most 1/2 below rank 1, so TAU above 1/2 already means "always top-1".
    if (!(value >= 0 && value <= 1))
      problems.push(`${paramName('tau', perLayer, layer)} = ${value} must be in [0, 1]`);
  });
  if (config.expertMeans !== undefined) {
    const decoded = decodeExpertMeans(config.expertMeans);
    if (typeof decoded === 'string') problems.push(decoded);
    else if (
      model !== undefined &&
      (decoded.layers !== model.numLayers || decoded.experts !== model.numExperts)
    ) {
      problems.push(
        `expertMeans covers ${decoded.layers} layers x ${decoded.experts} experts; the model has ${model.numLayers} x ${model.numExperts}`,
      );
    }
  }
  return problems;
}

export class SkipPolicy extends SelectingPolicy {
  private readonly tau: Float64Array;
  private readonly means: ExpertMeans | undefined;

  constructor(config: SkipConfig, model: RoutingModel, name?: string) {
    const spec = validatePolicy(skipKind, config, model, name);
    super(spec, model.nativeK, model);
    this.tau = perLayerValues(config.tau, model.numLayers);
    const means = config.expertMeans === undefined ? undefined : decodeExpertMeans(config.expertMeans);
    // validatePolicy already rejected undecodable means.
    this.means = typeof means === 'string' ? undefined : means;
  }

  override route(input: RouterProbs): RoutingDecision {
    const decision = super.route(input);
    return this.means
      ? { ...decision, prior: skippedExpertPrior(input, decision, this.means, this.maxK) }
      : decision;
  }

  protected chooseK(layer: number, _entropy: number, top: Float64Array): number {
    const bound = this.tau[layer]! * this.weightNormaliser(this.maxK, top);
    let k = 1;
    while (k < this.maxK && top[k]! >= bound) k++;
    return k;
  }

  /** Native weights: always divide by the native top-K mass, whatever K was kept. */
  protected override weightNormaliser(_k: number, top: Float64Array): number {
    let native = 0;
    for (let i = 0; i < this.maxK; i++) native += top[i]!;
    return native;
  }
}

/**
 * Native weight x mean output of every native top-K expert the decision left out (the decision
 * keeps a prefix of the native top-K, possibly empty). Shared by every policy carrying expert means.
 */
export function skippedExpertPrior(
  input: RouterProbs,
  decision: RoutingDecision,
  means: ExpertMeans,
  K: number,
): Float32Array {
  const { numTokens, numExperts: E, probs, layer } = input;
  const H = means.hidden;
  const prior = new Float32Array(numTokens * H);
  const top = new Int32Array(K);
  for (let t = 0; t < numTokens; t++) {
    const kept = decision.offsets[t + 1]! - decision.offsets[t]!;
    if (kept >= K) continue;
    // Same order as the kernel: descending probability, lower index first on ties.
    let filled = 0;
    for (let e = 0; e < E; e++) {
      const p = probs[t * E + e]!;
      let pos = filled < K ? filled++ : K;
      if (pos === K && !(p > probs[t * E + top[K - 1]!]!)) continue;
      if (pos === K) pos = K - 1;
      while (pos > 0 && p > probs[t * E + top[pos - 1]!]!) {
        top[pos] = top[pos - 1]!;
        pos--;
      }
      top[pos] = e;
    }
    let mass = 0;
    for (let r = 0; r < K; r++) mass += probs[t * E + top[r]!]!;
    for (let r = kept; r < K; r++) {
      const w = probs[t * E + top[r]!]! / mass;
      const mean = (layer * E + top[r]!) * H;
      for (let i = 0; i < H; i++) prior[t * H + i]! += w * means.data[mean + i]!;
    }
  }
  return prior;
}

export const skipKind: PolicyKind<SkipConfig> = {
  kind: 'skip',
  grammar: 'skip:TAU',
  summary:
    'native top-K, dropping experts below rank 1 whose native weight < TAU; kept weights not renormalised',
  parseSpec: (body, fail) => ({ kind: 'skip', tau: parseSpecNumber(body, 'TAU', fail) }),
  // Per-layer thresholds and expert means exist only in profiles.
  formatSpec: (config) =>
    typeof config.tau === 'number' && config.expertMeans === undefined
      ? `skip:${formatSpecNumber(config.tau)}`
      : undefined,
  check: checkSkip,
  create: (config, model, name) => new SkipPolicy(config, model, name),
};
