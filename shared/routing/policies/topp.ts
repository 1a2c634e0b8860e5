// `topp:P[@KMIN-KMAX]` (Huang et al. 2024, "Harder tasks need more experts"): the smallest K in
// [KMIN, KMAX] whose top-K cumulative probability reaches P (probabilities: the softmax, or sigmoid
// scores divided by their sum; in the rule's ranking order). P may be one value per layer.

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

export const toppSchema = z
  .object({
    kind: z.literal('topp'),
    /** Probability mass to reach: one value, or one per layer. */
    p: z.union([z.number(), z.array(z.number())]),
    /** Both or neither; default 1..numExperts. */
    kMin: z.number().int().optional(),
    kMax: z.number().int().optional(),
  })
  .strict()
  .superRefine((config, ctx) => {
    for (const message of checkTopP(config)) ctx.addIssue({ code: 'custom', message });
  });

export type TopPConfig = z.infer<typeof toppSchema>;

function checkTopP(config: TopPConfig, model?: RoutingModel): string[] {
  const { p, kMin, kMax } = config;
  const problems: string[] = [];
  const perLayer = typeof p !== 'number';
  const values = perLayer ? p : [p];
  if (perLayer) problems.push(...checkLayerCount('p', values.length, model));
  values.forEach((value, layer) => {
    if (!(value > 0 && value <= 1))
      problems.push(`${paramName('p', perLayer, layer)} = ${value} must be in (0, 1]`);
  });
  if ((kMin === undefined) !== (kMax === undefined)) {
    problems.push('kMin and kMax must be given together');
  } else if (kMin !== undefined && kMax !== undefined) {
    problems.push(...checkExpertCount('kMin', kMin, model), ...checkExpertCount('kMax', kMax, model));
    if (kMin > kMax) problems.push(`kMin ${kMin} exceeds kMax ${kMax}`);
  }
  return problems;
}

function formatTopP(config: TopPConfig): string | undefined {
  if (typeof config.p !== 'number') return undefined;
  const range = config.kMin === undefined ? '' : `@${config.kMin}-${config.kMax}`;
  return `topp:${formatSpecNumber(config.p)}${range}`;
}

export class TopPPolicy extends SelectingPolicy {
  private readonly p: Float64Array;
  private readonly kMin: number;

  constructor(config: TopPConfig, model: RoutingModel, name?: string) {
    const spec = validatePolicy(toppKind, config, model, name);
    super(spec, config.kMax ?? model.numExperts, model);
    this.p = perLayerValues(config.p, model.numLayers);
    this.kMin = config.kMin ?? 1;
  }

  protected chooseK(layer: number, _entropy: number, top: Float64Array): number {
    const target = this.p[layer]!;
    const kMax = this.maxK;
    let mass = 0;
    for (let k = 1; k <= kMax; k++) {
      mass += top[k - 1]!;
      if (k >= this.kMin && mass >= target) return k;
    }
    // Rounding can leave the full mass a hair under P = 1: then every allowed expert is kept.
    return kMax;
  }
}

export const toppKind: PolicyKind<TopPConfig> = {
  kind: 'topp',
  grammar: 'topp:P[@KMIN-KMAX]',
  summary: 'smallest K in [KMIN, KMAX] (default 1..E) whose top-K probability mass reaches P',
  parseSpec: (body, fail) => {
    const [pText, range] = splitAtSign(body, fail);
    const p = parseSpecNumber(pText, 'P', fail);
    if (range === undefined) return { kind: 'topp', p };
    const bounds = range.split('-');
    if (bounds.length !== 2) return fail(`range "${range}" is not KMIN-KMAX`);
    return {
      kind: 'topp',
      p,
      kMin: parseSpecInteger(bounds[0]!, 'KMIN', fail),
      kMax: parseSpecInteger(bounds[1]!, 'KMAX', fail),
    };
  },
  formatSpec: formatTopP,
  check: checkTopP,
  create: (config, model, name) => new TopPPolicy(config, model, name),
};
