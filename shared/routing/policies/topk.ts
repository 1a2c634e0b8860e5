// `topk:K`: the K best-ranked experts for every token, weighted by the model's native rule
// (renormalised over them for Mixtral, Qwen3-MoE, DeepSeek; raw scores for Qwen2-MoE and OLMoE; times
// DeepSeek's routed scaling factor). With K equal to the native K this is the model's own routing;
// other K trade quality for compute.

import { z } from 'zod';
import type { RoutingModel } from '../policy.js';
import { SelectingPolicy } from './kernel.js';
import { checkExpertCount, type PolicyKind, validatePolicy } from './policy-kind.js';
import { parseSpecInteger } from './spec-syntax.js';

export const topkSchema = z
  .object({ kind: z.literal('topk'), k: z.number().int() })
  .strict()
  .superRefine((config, ctx) => {
    for (const message of checkTopK(config)) ctx.addIssue({ code: 'custom', message });
  });

export type TopKConfig = z.infer<typeof topkSchema>;

function checkTopK(config: TopKConfig, model?: RoutingModel): string[] {
  return checkExpertCount('k', config.k, model);
}

function formatTopK(config: TopKConfig): string {
  return `topk:${config.k}`;
}

export class TopKPolicy extends SelectingPolicy {
  private readonly k: number;

  constructor(config: TopKConfig, model: RoutingModel, name?: string) {
    super(validatePolicy(topkKind, config, model, name), config.k, model);
    this.k = config.k;
  }

  protected chooseK(): number {
    return this.k;
  }
}

export const topkKind: PolicyKind<TopKConfig> = {
  kind: 'topk',
  grammar: 'topk:K',
  summary: 'keep the K most probable experts',
  parseSpec: (body, fail) => ({ kind: 'topk', k: parseSpecInteger(body, 'K', fail) }),
  formatSpec: formatTopK,
  check: checkTopK,
  create: (config, model, name) => new TopKPolicy(config, model, name),
};
