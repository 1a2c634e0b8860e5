// `skip:TAU` — native-weight expert skipping: start from the model's native top-K with its native
// weights (p_i over the sum of the native top-K), then drop every expert below rank 1 whose native
// weight is under TAU. Kept experts keep their native weights, NOT renormalised: the layer's output
// is the native output minus the skipped terms. Measured on the demo model, renormalising after a
// skip doubles the perplexity cost at the same saving (README "Adaptive K"), because it scales up
// the kept expert instead of only removing the small one. TAU may be one value per layer.

import { z } from 'zod';
import type { RoutingModel } from '../policy.js';
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
  return problems;
}

export class SkipPolicy extends SelectingPolicy {
  private readonly tau: Float64Array;

  constructor(config: SkipConfig, model: RoutingModel, name?: string) {
    const spec = validatePolicy(skipKind, config, model, name);
    super(spec, model.nativeK, model);
    this.tau = perLayerValues(config.tau, model.numLayers);
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

export const skipKind: PolicyKind<SkipConfig> = {
  kind: 'skip',
  grammar: 'skip:TAU',
  summary:
    'native top-K, dropping experts below rank 1 whose native weight < TAU; kept weights not renormalised',
  parseSpec: (body, fail) => ({ kind: 'skip', tau: parseSpecNumber(body, 'TAU', fail) }),
  formatSpec: (config) =>
    typeof config.tau === 'number' ? `skip:${formatSpecNumber(config.tau)}` : undefined,
  check: checkSkip,
  create: (config, model, name) => new SkipPolicy(config, model, name),
};
