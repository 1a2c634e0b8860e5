// What routing policies, statistics and profiles know about a model, derived from its family's layer
// plan: the MoE layers (dense ones are left out, so per-layer parameters are indexed by MoE layer),
// their expert count, native K and native rule.

import type { ModelConfig } from '../../shared/families/family.js';
import type { LayerPlan, MoeLayerPlan } from '../../shared/families/layer-plan.js';
import { familyOf } from '../../shared/families/registry.js';
import type { RouterRule, RoutingModel } from '../../shared/routing/policy.js';
import { UnsupportedMoePlanError } from './errors.js';

/** `hidden`: the model's hidden size (what per-expert tables in profiles are checked against). */
export function routingModelOf(plan: LayerPlan, hidden?: number): RoutingModel {
  const moe = plan.flatMap((l, i) => (l.kind === 'moe' ? [{ layer: i, plan: l }] : []));
  const first = moe[0];
  if (first === undefined) throw new UnsupportedMoePlanError(-1, 'a model without MoE layers');
  const rule = ruleOf(first.plan);
  const same = JSON.stringify(rule);
  for (const { layer, plan: p } of moe) {
    // One policy object serves every layer; layers routing differently would need a rule per layer.
    if (
      p.numExperts !== first.plan.numExperts ||
      p.nativeK !== first.plan.nativeK ||
      JSON.stringify(ruleOf(p)) !== same
    )
      throw new UnsupportedMoePlanError(layer, 'MoE layers with different expert counts, K or routing rules');
  }
  return {
    numLayers: moe.length,
    numExperts: first.plan.numExperts,
    nativeK: first.plan.nativeK,
    moeLayers: moe.map((m) => m.layer),
    rule,
    ...(hidden === undefined ? {} : { hidden }),
  };
}

/** The routing model of a parsed config.json (its family's layer plan), before any weight is read. */
export function routingModelOfConfig(config: ModelConfig): RoutingModel {
  return routingModelOf(familyOf(config).layerPlan(config), config.hiddenSize);
}

function ruleOf(p: MoeLayerPlan): RouterRule {
  return {
    gate: p.gate,
    renormalize: p.renormalize,
    ...(p.selectionBias ? { selectionBias: true } : {}),
    ...(p.groups ? { groups: { numGroups: p.groups.numGroups, topKGroups: p.groups.topKGroups } } : {}),
    routedScalingFactor: p.routedScalingFactor,
  };
}
