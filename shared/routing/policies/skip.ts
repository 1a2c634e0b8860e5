// `skip:TAU` — native-weight expert skipping: start from the model's native top-K with its native
// weights (p_i over the sum of the native top-K under a renormalising rule, p_i itself under a rule
// without renormalisation; the routed scaling factor applied after), then drop every expert below
// rank 1 whose native weight (before scaling) is under TAU. Kept experts keep their native weights, NOT renormalised: the layer's output
// is the native output minus the skipped terms. Measured on the demo model, renormalising after a
// skip doubles the perplexity cost at the same saving (README "Adaptive K"), because it scales up
// the kept expert instead of only removing the small one. TAU may be one value per layer.
// With calibrated expert means (profiles only), each skipped expert is replaced by its native
// weight times its mean output: a prior the combine step adds at no expert or network cost. With
// calibrated linear substitutes instead (profile version 3), by its native weight times a rank-r
// affine map of the token's expert input: no expert call or network either, 2 r hidden
// multiply-adds on the coordinator.

import { z } from 'zod';
import { decodeExpertMeans, expertMeansSchema } from '../expert-means.js';
import { decodeExpertSubstitutes, expertSubstitutesSchema } from '../expert-substitutes.js';
import type { RouterProbs, RoutingDecision, RoutingModel } from '../policy.js';
import { SelectingPolicy, type SkippedExpertEstimate, skippedExpertPrior } from './kernel.js';
import {
  checkExpertTable,
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
    /** Linear substitute of every (layer, expert), applied to the token's expert input in place of skipped experts. */
    expertSubstitutes: expertSubstitutesSchema.optional(),
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
  if (config.expertMeans !== undefined && config.expertSubstitutes !== undefined) {
    problems.push('expertMeans and expertSubstitutes are alternatives: a profile carries one of them');
  }
  if (config.expertSubstitutes !== undefined) {
    const decoded = decodeExpertSubstitutes(config.expertSubstitutes);
    if (typeof decoded === 'string') problems.push(decoded);
    else problems.push(...checkExpertTable('expertSubstitutes', decoded, model));
  }
  if (config.expertMeans !== undefined) {
    const decoded = decodeExpertMeans(config.expertMeans);
    if (typeof decoded === 'string') problems.push(decoded);
    else problems.push(...checkExpertTable('expertMeans', decoded, model));
  }
  return problems;
}

export class SkipPolicy extends SelectingPolicy {
  private readonly tau: Float64Array;
  private readonly estimate: SkippedExpertEstimate | undefined;

  constructor(config: SkipConfig, model: RoutingModel, name?: string) {
    const spec = validatePolicy(skipKind, config, model, name);
    super(spec, model.nativeK, model);
    this.tau = perLayerValues(config.tau, model.numLayers);
    // validatePolicy already rejected undecodable tables and carrying both.
    if (config.expertSubstitutes !== undefined) {
      const substitutes = decodeExpertSubstitutes(config.expertSubstitutes);
      if (typeof substitutes !== 'string') {
        this.estimate = { kind: 'linear', substitutes };
        model.substituteKernel?.prepare(substitutes);
      }
    } else if (config.expertMeans !== undefined) {
      const means = decodeExpertMeans(config.expertMeans);
      if (typeof means !== 'string') this.estimate = { kind: 'mean', means };
    }
  }

  override route(input: RouterProbs): RoutingDecision {
    if (!this.estimate) return super.route(input);
    const { decision, candidates } = this.routeWithCandidates(input);
    const prior = skippedExpertPrior(input, decision, candidates, {
      K: this.maxK,
      normaliser: (raw) => this.weightNormaliser(this.maxK, raw),
      scale: this.rule.routedScalingFactor,
      estimates: [this.estimate],
      ...(this.model.substituteKernel ? { kernel: this.model.substituteKernel } : {}),
    });
    return { ...decision, prior };
  }

  /** Keeps rank 1 and every next native expert whose native weight (before scaling) is >= TAU. */
  protected chooseK(layer: number, _entropy: number, _top: Float64Array): number {
    const raw = this.topRaw;
    const bound = this.tau[layer]! * this.weightNormaliser(this.maxK, raw);
    let k = 1;
    while (k < this.maxK && raw[k]! >= bound) k++;
    return k;
  }

  /**
   * Native weights: under a renormalising rule always divide by the native top-K's scores, whatever
   * K was kept; without renormalisation the native weights are the scores themselves.
   */
  protected override weightNormaliser(k: number, raw: Float64Array): number {
    return super.weightNormaliser(this.rule.renormalize ? this.maxK : k, raw);
  }
}

export const skipKind: PolicyKind<SkipConfig> = {
  kind: 'skip',
  grammar: 'skip:TAU',
  summary:
    'native top-K, dropping experts below rank 1 whose native weight < TAU; kept weights not renormalised',
  parseSpec: (body, fail) => ({ kind: 'skip', tau: parseSpecNumber(body, 'TAU', fail) }),
  // Per-layer thresholds, expert means and substitutes exist only in profiles.
  formatSpec: (config) =>
    typeof config.tau === 'number' &&
    config.expertMeans === undefined &&
    config.expertSubstitutes === undefined
      ? `skip:${formatSpecNumber(config.tau)}`
      : undefined,
  check: checkSkip,
  create: (config, model, name) => new SkipPolicy(config, model, name),
};
