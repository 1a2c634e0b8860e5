// What one routing policy kind contributes to the system: its spec grammar, canonical formatting,
// parameter checks and a constructor. Adding a policy means one file exporting a PolicyKind (plus
// its zod schema) and its entries in registry.ts; spec parsing and profile loading pick it up from there.

import { RoutingConfigError } from '../errors.js';
import type { RoutingModel, RoutingPolicy } from '../policy.js';

export interface PolicyKind<C extends { readonly kind: string }> {
  readonly kind: C['kind'];
  /** This kind's spec grammar, e.g. `topk:K`. */
  readonly grammar: string;
  /** One line saying what the policy does, shown next to the grammar in error hints. */
  readonly summary: string;
  /** Parses the text after `kind:`. Malformed syntax goes to fail; value ranges are check()'s job. */
  parseSpec(body: string, fail: (problem: string) => never): C;
  /** Canonical spec, or undefined when per-layer parameters make the config inexpressible as one. */
  formatSpec(config: C): string | undefined;
  /** Every problem with the parameters; checks that need the model run only when it is given. */
  check(config: C, model?: RoutingModel): string[];
  create(config: C, model: RoutingModel, name?: string): RoutingPolicy;
}

/** Problems with the model description itself; a policy cannot be sized without a sane one. */
export function checkModel(model: RoutingModel): string[] {
  const problems: string[] = [];
  const { numLayers, numExperts, nativeK } = model;
  if (!Number.isInteger(numLayers) || numLayers < 1)
    problems.push(`model numLayers ${numLayers} is not >= 1`);
  if (!Number.isInteger(numExperts) || numExperts < 1)
    problems.push(`model numExperts ${numExperts} is not >= 1`);
  if (!Number.isInteger(nativeK) || nativeK < 1 || nativeK > numExperts)
    problems.push(`model nativeK ${nativeK} is not in 1..numExperts (${numExperts})`);
  if (model.moeLayers !== undefined && model.moeLayers.length !== numLayers)
    problems.push(`model lists ${model.moeLayers.length} MoE layers but numLayers is ${numLayers}`);
  const groups = model.rule?.groups;
  if (groups !== undefined) {
    const { numGroups, topKGroups } = groups;
    if (!Number.isInteger(numGroups) || numGroups < 1 || numExperts % numGroups !== 0)
      problems.push(`model numGroups ${numGroups} does not divide numExperts ${numExperts}`);
    else if (!Number.isInteger(topKGroups) || topKGroups < 1 || topKGroups > numGroups)
      problems.push(`model topKGroups ${topKGroups} is not in 1..numGroups (${numGroups})`);
    else if (nativeK > selectableExperts(model))
      problems.push(
        `model nativeK ${nativeK} exceeds the ${selectableExperts(model)} experts its groups allow`,
      );
  }
  if (model.rule?.selectionBias && model.rule.gate !== 'sigmoid' && model.rule.groups !== undefined)
    problems.push('a selection bias with group-limited routing is defined for sigmoid gates only');
  return problems;
}

/** Experts one token can choose from: all of them, or those of its topKGroups groups. */
export function selectableExperts(model: RoutingModel): number {
  const groups = model.rule?.groups;
  if (groups === undefined) return model.numExperts;
  return (model.numExperts / groups.numGroups) * groups.topKGroups;
}

/**
 * Runs the kind's checks against the model and returns the policy's spec: the canonical spec
 * when one exists, else the given name (a profile's), else `<kind>:per-layer`.
 */
export function validatePolicy<C extends { readonly kind: string }>(
  kind: PolicyKind<C>,
  config: C,
  model: RoutingModel,
  name: string | undefined,
): string {
  const modelProblems = checkModel(model);
  const problems = modelProblems.length > 0 ? modelProblems : kind.check(config, model);
  if (problems.length > 0) {
    throw new RoutingConfigError(`invalid ${kind.kind} routing policy: ${problems.join('; ')}`, {
      policy: kind.kind,
      problems,
      hint: `${kind.grammar}: ${kind.summary}`,
    });
  }
  return kind.formatSpec(config) ?? name ?? `${kind.kind}:per-layer`;
}

/**
 * Problems of a per-(MoE layer, expert) table a profile carries (means, substitutes): it must cover
 * the model's MoE layers and experts and have the model's hidden width (when the model says it).
 */
export function checkExpertTable(
  name: string,
  table: { readonly layers: number; readonly experts: number; readonly hidden: number },
  model: RoutingModel | undefined,
): string[] {
  if (model === undefined) return [];
  const problems: string[] = [];
  if (table.layers !== model.numLayers || table.experts !== model.numExperts) {
    problems.push(
      `${name} covers ${table.layers} layers x ${table.experts} experts; the model has ${model.numLayers} x ${model.numExperts}`,
    );
  }
  if (model.hidden !== undefined && table.hidden !== model.hidden) {
    problems.push(`${name} rows are ${table.hidden} wide; the model's hidden size is ${model.hidden}`);
  }
  return problems;
}

/** `thresholds[layer 3]` for per-layer parameters, `thresholds` for global ones. */
export function paramName(param: string, perLayer: boolean, layer: number): string {
  return perLayer ? `${param}[layer ${layer}]` : param;
}

/** A per-layer parameter must have exactly one entry per MoE layer. */
export function checkLayerCount(param: string, count: number, model: RoutingModel | undefined): string[] {
  if (model === undefined || count === model.numLayers) return [];
  return [`${param} has ${count} per-layer entries but the model has ${model.numLayers} MoE layers`];
}

/** Checks an expert count parameter: integer in 1..numExperts (upper bound only with a model). */
export function checkExpertCount(what: string, k: number, model: RoutingModel | undefined): string[] {
  if (!Number.isInteger(k) || k < 1) return [`${what} must be an integer >= 1, got ${k}`];
  if (model !== undefined && k > model.numExperts)
    return [`${what} = ${k} exceeds the model's ${model.numExperts} experts`];
  if (model !== undefined && k > selectableExperts(model))
    return [
      `${what} = ${k} exceeds the ${selectableExperts(model)} experts a token can choose under group-limited routing`,
    ];
  return [];
}

/** A global value repeated for every layer, or the per-layer list itself: lookups by layer stay branch-free. */
export function perLayerValues(value: number | readonly number[], numLayers: number): Float64Array {
  return typeof value === 'number' ? new Float64Array(numLayers).fill(value) : Float64Array.from(value);
}
