// Every adaptive-K policy calibrated here gives a token K = 1 by thresholding one router signal (with
// a native K of 2 that is the whole decision; above 2, tokens not at K = 1 keep 2..native K experts as
// the policy decides: entropy keeps the native K). A per-layer "skip rate" (the fraction of tokens that
// get K = 1) is therefore a common currency: it maps to each policy's per-layer parameter through the
// signal's quantile table, and the search and percentile methods work in skip rates. Layers are MoE layers.

import type { PolicyConfig } from '../../shared/routing/registry.js';
import { type RouterSignalTable, type SignalName, signalQuantile } from '../moe/observers/router-signals.js';

export const CALIBRATED_POLICIES = ['entropy', 'topp', 'ratio', 'skip'] as const;
export type CalibratedPolicy = (typeof CALIBRATED_POLICIES)[number];

/** The signal each policy thresholds, and on which side K = 1 lies. */
const SIGNAL_OF: Record<CalibratedPolicy, { signal: SignalName; lowMeansSkip: boolean }> = {
  entropy: { signal: 'entropy', lowMeansSkip: true }, // K = 1 when H < threshold
  topp: { signal: 'p1', lowMeansSkip: false }, // K = 1 when p1 >= P
  ratio: { signal: 'ratio', lowMeansSkip: true }, // K = 1 when p2 / p1 < beta
  skip: { signal: 'w2', lowMeansSkip: true }, // K = 1 when the rank-2 native weight < tau
};

export function isCalibratedPolicy(name: string): name is CalibratedPolicy {
  return (CALIBRATED_POLICIES as readonly string[]).includes(name);
}

/** Per-layer threshold on the policy's signal that gives K = 1 to a fraction `rate` of tokens. */
export function thresholdForRate(
  policy: CalibratedPolicy,
  table: RouterSignalTable,
  layer: number,
  rate: number,
): number {
  const { signal, lowMeansSkip } = SIGNAL_OF[policy];
  if (rate <= 0) return lowMeansSkip ? 0 : 1;
  if (rate >= 1) return lowMeansSkip ? Number.POSITIVE_INFINITY : 0;
  return signalQuantile(table, layer, signal, lowMeansSkip ? rate : 1 - rate);
}

/** The policy config (per-layer parameters) realising per-layer skip rates, for a model of native K. */
export function policyForRates(
  policy: CalibratedPolicy,
  table: RouterSignalTable,
  rates: readonly number[],
  nativeK = 2,
): PolicyConfig {
  const t = rates.map((r, l) => thresholdForRate(policy, table, l, r));
  switch (policy) {
    case 'entropy':
      // A threshold of +inf is "always K = 1"; ln E + 1 is above any entropy and stays JSON-safe.
      return {
        kind: 'entropy',
        kValues: [1, nativeK],
        thresholds: t.map((x) => [Number.isFinite(x) ? Math.max(x, 1e-6) : 1e3]),
      };
    case 'topp':
      return { kind: 'topp', p: t.map((x) => Math.min(1, Math.max(x, 1e-6))), kMin: 1, kMax: nativeK };
    case 'ratio':
      return { kind: 'ratio', beta: t.map((x) => Math.min(1, x)) };
    case 'skip':
      return { kind: 'skip', tau: t.map((x) => Math.min(1, x)) };
  }
}
