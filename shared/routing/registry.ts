// The one table of routing policy kinds: the zod schema of every policy config (used by profiles),
// the PolicyKind behind each `kind` (used by specs) and the constructor dispatch. A new policy is
// one file under policies/ plus an entry in each of the two lists below.

import { z } from 'zod';
import { allocatorKind, allocatorSchema } from './policies/allocator.js';
import { entropyKind, entropySchema } from './policies/entropy.js';
import type { PolicyKind } from './policies/policy-kind.js';
import { ratioKind, ratioSchema } from './policies/ratio.js';
import { skipKind, skipSchema } from './policies/skip.js';
import { topkKind, topkSchema } from './policies/topk.js';
import { toppKind, toppSchema } from './policies/topp.js';
import type { RoutingModel, RoutingPolicy } from './policy.js';

export const policyConfigSchema = z.discriminatedUnion('kind', [
  topkSchema,
  entropySchema,
  toppSchema,
  ratioSchema,
  skipSchema,
  allocatorSchema,
]);

/** A validated policy configuration: what a spec parses to and what a profile stores. */
export type PolicyConfig = z.infer<typeof policyConfigSchema>;
export type PolicyKindName = PolicyConfig['kind'];
type ConfigOf<K extends PolicyKindName> = Extract<PolicyConfig, { kind: K }>;

const kinds: { readonly [K in PolicyKindName]: PolicyKind<ConfigOf<K>> } = {
  topk: topkKind,
  entropy: entropyKind,
  topp: toppKind,
  ratio: ratioKind,
  skip: skipKind,
  allocator: allocatorKind,
};

/** Policy kinds in the order they are listed to users (the table's order). */
export const policyKindNames = Object.keys(kinds) as readonly PolicyKindName[];

export function isPolicyKindName(name: string): name is PolicyKindName {
  return Object.hasOwn(kinds, name);
}

export function getPolicyKind<K extends PolicyKindName>(name: K): PolicyKind<ConfigOf<K>> {
  return kinds[name];
}

/** The kind behind a config. TypeScript cannot correlate `config.kind` with the table entry, hence the one cast. */
function kindOf<C extends PolicyConfig>(config: C): PolicyKind<C> {
  return kinds[config.kind] as unknown as PolicyKind<C>;
}

/** Problems with a config; model-dependent checks (K <= experts, per-layer lengths) only when model is given. */
export function checkPolicyConfig(config: PolicyConfig, model?: RoutingModel): string[] {
  return kindOf(config).check(config, model);
}

/** Canonical spec string, or undefined when per-layer parameters cannot be written as one. */
export function formatPolicySpec(config: PolicyConfig): string | undefined {
  return kindOf(config).formatSpec(config);
}

/**
 * Builds the policy for a model; throws RoutingConfigError when the config does not fit it.
 * `name` becomes the policy's spec when the config has no spec form (per-layer profiles).
 */
export function createRoutingPolicy(config: PolicyConfig, model: RoutingModel, name?: string): RoutingPolicy {
  return kindOf(config).create(config, model, name);
}
