// Quality-constrained calibration: minimise experts per token subject to a perplexity budget, with
// every candidate measured by a real reduced-K forward pass (never estimated). Greedy over per-layer
// skip rates: each round tries one more step of skipping in every layer, keeps the layer whose step
// costs the least perplexity per expert activation saved, and stops when no step fits the budget.

import type { RoutingModel } from '../../shared/routing/policy.js';
import { ROUTING_PROFILE_VERSION, type RoutingProfile } from '../../shared/routing/profile.js';
import type { PolicyConfig } from '../../shared/routing/registry.js';
import type { EngineClient } from '../engine/engine-client.js';
import { evaluatePerplexity } from '../evaluation/perplexity.js';
import { signedPercent } from './format.js';

export interface SearchPoint {
  readonly rates: number[];
  readonly perplexity: number;
  readonly avgK: number;
}

export interface SearchOptions {
  /** The policy config realising per-layer skip rates. */
  readonly configFor: (rates: readonly number[]) => PolicyConfig;
  /** Length of the rate vector (default: one per MoE layer; the allocator has two per layer). */
  readonly dims?: number;
  /** Windows the search measures on, end to end. */
  readonly ids: Uint16Array;
  readonly windowLen: number;
  /** Allowed relative perplexity increase over native top-K, e.g. 0.01. */
  readonly budget: number;
  /** Skip-rate increment per step; halved (down to minStep) when no full step fits. */
  readonly step: number;
  readonly minStep: number;
  readonly onEvaluation?: (evaluations: number, best: SearchPoint, base: SearchPoint) => void;
}

export interface SearchResult {
  readonly base: SearchPoint;
  readonly best: SearchPoint;
  /** Accepted points in order: the frontier the greedy walk traced. */
  readonly path: SearchPoint[];
  readonly evaluations: number;
}

/** Upper bound on a search's evaluations: each round raises one rate by one step, after a round of `dims` trials. */
export function maxSearchEvaluations(dims: number, step: number): number {
  return 1 + dims * dims * Math.ceil(1 / step) + dims * 2;
}

/** Progress text of a search: its best point so far against native top-K. */
export function describeSearchPoint(best: SearchPoint, base: SearchPoint): string {
  return `best avgK ${best.avgK.toFixed(3)} ppl ${signedPercent(best.perplexity / base.perplexity - 1)}`;
}

/** A profile JSON string the engine resolves inline (no temporary files). */
export function inlineProfile(config: PolicyConfig, name: string): string {
  const profile: RoutingProfile = {
    kmoeRoutingProfile: ROUTING_PROFILE_VERSION,
    policy: config,
    provenance: { name },
  };
  return JSON.stringify(profile);
}

export async function qualitySearch(engine: EngineClient, o: SearchOptions): Promise<SearchResult> {
  const L = o.dims ?? engine.info.routing.numLayers;
  let evaluations = 0;
  const measure = async (rates: number[]): Promise<SearchPoint> => {
    const routing = inlineProfile(o.configFor(rates), `search-${evaluations}`);
    const r = await evaluatePerplexity(engine, o.ids, { windowLen: o.windowLen, routing });
    evaluations++;
    return { rates, perplexity: r.perplexity, avgK: r.avgK };
  };
  const base = await measure(new Array<number>(L).fill(0));
  const limit = base.perplexity * (1 + o.budget);
  let current = base;
  const path: SearchPoint[] = [base];
  let step = o.step;
  o.onEvaluation?.(evaluations, current, base);
  for (;;) {
    let chosen: { point: SearchPoint; cost: number } | undefined;
    for (let l = 0; l < L; l++) {
      if (current.rates[l]! >= 1) continue;
      const rates = [...current.rates];
      rates[l] = Math.min(1, round(rates[l]! + step));
      const point = await measure(rates);
      o.onEvaluation?.(evaluations, current, base);
      const saved = current.avgK - point.avgK;
      if (point.perplexity > limit || saved <= 0) continue;
      const cost = (point.perplexity - current.perplexity) / saved;
      if (!chosen || cost < chosen.cost) chosen = { point, cost };
    }
    if (chosen) {
      current = chosen.point;
      path.push(current);
      o.onEvaluation?.(evaluations, current, base);
    } else if (step / 2 >= o.minStep) {
      step /= 2;
    } else {
      break;
    }
  }
  return { base, best: current, path, evaluations };
}

/** Skip rates are kept on a decimal grid so profiles read cleanly (0.3, not 0.30000000000000004). */
function round(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/** What a profile records of the model: MoE layers, experts, native K (and the checkpoint, when known). */
export function profileModel(model: RoutingModel, fingerprint?: string): RoutingProfile['model'] {
  const base = { numLayers: model.numLayers, numExperts: model.numExperts, nativeK: model.nativeK };
  return fingerprint === undefined ? base : { fingerprint, ...base };
}
