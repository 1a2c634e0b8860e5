// `entropy:K1,K2[,...]@T1[,...]`: more experts for tokens the router is unsure about. With router
// entropy H (nats, over the full softmax, or over the sigmoid scores divided by their sum), K = K_i for the first i with H < T_i, else the last K. Thresholds
// may be global or one list per layer (calibrated profiles).

import { z } from 'zod';
import type { RoutingModel } from '../policy.js';
import { SelectingPolicy } from './kernel.js';
import {
  checkExpertCount,
  checkLayerCount,
  type PolicyKind,
  paramName,
  validatePolicy,
} from './policy-kind.js';
import {
  formatSpecNumber,
  parseSpecInteger,
  parseSpecList,
  parseSpecNumber,
  splitAtSign,
} from './spec-syntax.js';

export const entropySchema = z
  .object({
    kind: z.literal('entropy'),
    kValues: z.array(z.number().int()),
    /** One ascending list for every layer, or a list of such lists indexed by layer. */
    thresholds: z.union([z.array(z.number()), z.array(z.array(z.number()))]),
  })
  .strict()
  .superRefine((config, ctx) => {
    for (const message of checkEntropy(config)) ctx.addIssue({ code: 'custom', message });
  });

export type EntropyConfig = z.infer<typeof entropySchema>;

function isPerLayer(thresholds: EntropyConfig['thresholds']): thresholds is number[][] {
  return thresholds.length > 0 && Array.isArray(thresholds[0]);
}

function checkEntropy(config: EntropyConfig, model?: RoutingModel): string[] {
  const { kValues, thresholds } = config;
  const problems: string[] = [];
  if (kValues.length < 2) problems.push(`needs at least 2 k values, got ${kValues.length}`);
  kValues.forEach((k, i) => {
    problems.push(...checkExpertCount(`kValues[${i}]`, k, model));
    if (i > 0 && !(k > kValues[i - 1]!))
      problems.push(`kValues must be strictly ascending: kValues[${i}] = ${k} after ${kValues[i - 1]}`);
  });
  const perLayer = isPerLayer(thresholds);
  const lists: readonly (readonly number[])[] = perLayer ? thresholds : [thresholds];
  if (perLayer) problems.push(...checkLayerCount('thresholds', lists.length, model));
  lists.forEach((list, layer) => {
    const name = paramName('thresholds', perLayer, layer);
    if (list.length !== kValues.length - 1) {
      problems.push(
        `${name} has ${list.length} values but ${kValues.length} k values need exactly ${kValues.length - 1}`,
      );
    }
    list.forEach((t, i) => {
      if (!Number.isFinite(t) || t <= 0)
        problems.push(`${name}[${i}] = ${t} must be > 0 (entropy is never negative)`);
      if (i > 0 && !(t > list[i - 1]!))
        problems.push(`${name} must be strictly ascending: [${i}] = ${t} after ${list[i - 1]}`);
    });
  });
  return problems;
}

function formatEntropy(config: EntropyConfig): string | undefined {
  if (isPerLayer(config.thresholds)) return undefined;
  return `entropy:${config.kValues.join(',')}@${config.thresholds.map(formatSpecNumber).join(',')}`;
}

export class EntropyPolicy extends SelectingPolicy {
  private readonly kValues: Int32Array;
  /** Thresholds per layer (a global list is shared by every layer). */
  private readonly thresholds: readonly Float64Array[];

  constructor(config: EntropyConfig, model: RoutingModel, name?: string) {
    const spec = validatePolicy(entropyKind, config, model, name);
    super(spec, Math.max(...config.kValues), model);
    this.kValues = Int32Array.from(config.kValues);
    const { thresholds } = config;
    this.thresholds = isPerLayer(thresholds)
      ? thresholds.map((list) => Float64Array.from(list))
      : new Array<Float64Array>(model.numLayers).fill(Float64Array.from(thresholds));
  }

  protected chooseK(layer: number, entropy: number): number {
    const thresholds = this.thresholds[layer]!;
    // First threshold the entropy is strictly below wins; the comparison must not be <= to match the reference.
    for (let i = 0; i < thresholds.length; i++) {
      if (entropy < thresholds[i]!) return this.kValues[i]!;
    }
    return this.kValues[thresholds.length]!;
  }
}

export const entropyKind: PolicyKind<EntropyConfig> = {
  kind: 'entropy',
  grammar: 'entropy:K1,K2[,...]@T1[,...]',
  summary: 'K = Ki for the first i with router entropy H < Ti (nats), else the last K',
  parseSpec: (body, fail) => {
    const [ks, ts] = splitAtSign(body, fail);
    if (ts === undefined) return fail(`"${body}" needs "@" followed by the entropy thresholds`);
    return {
      kind: 'entropy',
      kValues: parseSpecList(ks, 'K', fail, parseSpecInteger),
      thresholds: parseSpecList(ts, 'T', fail, parseSpecNumber),
    };
  },
  formatSpec: formatEntropy,
  check: checkEntropy,
  create: (config, model, name) => new EntropyPolicy(config, model, name),
};
