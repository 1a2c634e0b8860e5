// `ratio:BETA[@KMAX]` (Lu et al. 2024, dynamic expert skipping): the top expert is always kept;
// each next expert in descending order, up to KMAX (default: the model's native K), is kept only
// while its probability is at least BETA times the top one's. BETA may be one value per layer.

import { z } from 'zod';
import type { RoutingModel } from '../policy.js';
import { SelectingPolicy } from './kernel.js';
import {
  checkExpertCount,
  checkLayerCount,
  type PolicyKind,
  paramName,
  perLayerValues,
  validatePolicy,
} from './policy-kind.js';
import { formatSpecNumber, parseSpecInteger, parseSpecNumber, splitAtSign } from './spec-syntax.js';

export const ratioSchema = z
  .object({
    kind: z.literal('ratio'),
    /** Threshold on p_j / p_1: one value, or one per layer. */
    beta: z.union([z.number(), z.array(z.number())]),
    /** Most experts kept; default the model's native K. */
    kMax: z.number().int().optional(),
  })
  .strict()
  .superRefine((config, ctx) => {
    for (const message of checkRatio(config)) ctx.addIssue({ code: 'custom', message });
  });

export type RatioConfig = z.infer<typeof ratioSchema>;

function checkRatio(config: RatioConfig, model?: RoutingModel): string[] {
  const { beta, kMax } = config;
  const problems: string[] = [];
  const perLayer = typeof beta !== 'number';
  const values = perLayer ? beta : [beta];
  if (perLayer) problems.push(...checkLayerCount('beta', values.length, model));
  values.forEach((value, layer) => {
    if (!(value >= 0 && value <= 1))
      problems.push(`${paramName('beta', perLayer, layer)} = ${value} must be in [0, 1]`);
  });
  if (kMax !== undefined) problems.push(...checkExpertCount('kMax', kMax, model));
  return problems;
}

function formatRatio(config: RatioConfig): string | undefined {
  if (typeof config.beta !== 'number') return undefined;
  return `ratio:${formatSpecNumber(config.beta)}${config.kMax === undefined ? '' : `@${config.kMax}`}`;
}

export class RatioPolicy extends SelectingPolicy {
  private readonly beta: Float64Array;

  constructor(config: RatioConfig, model: RoutingModel, name?: string) {
    const spec = validatePolicy(ratioKind, config, model, name);
    super(spec, config.kMax ?? model.nativeK, model);
    this.beta = perLayerValues(config.beta, model.numLayers);
  }

  protected chooseK(layer: number, _entropy: number, top: Float64Array): number {
    const bound = this.beta[layer]! * top[0]!;
    let k = 1;
    // Descending order: once one expert falls below the bound every later one does too.
    while (k < this.maxK && top[k]! >= bound) k++;
    return k;
  }
}

export const ratioKind: PolicyKind<RatioConfig> = {
  kind: 'ratio',
  grammar: 'ratio:BETA[@KMAX]',
  summary: 'keep the top expert, and each next one (up to KMAX, default native K) while p >= BETA * p_top',
  parseSpec: (body, fail) => {
    const [betaText, kMaxText] = splitAtSign(body, fail);
    const beta = parseSpecNumber(betaText, 'BETA', fail);
    if (kMaxText === undefined) return { kind: 'ratio', beta };
    return { kind: 'ratio', beta, kMax: parseSpecInteger(kMaxText, 'KMAX', fail) };
  },
  formatSpec: formatRatio,
  check: checkRatio,
  create: (config, model, name) => new RatioPolicy(config, model, name),
};
