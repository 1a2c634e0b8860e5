// Skip rates -> per-layer policy parameters, and the router-signal quantile tables behind them.

import { describe, expect, it } from 'vitest';
import {
  CALIBRATED_POLICIES,
  policyForRates,
  thresholdForRate,
} from '../../../coordinator/calibration/skip-rates.js';
import { RouterSignalRecorder, signalQuantile } from '../../../coordinator/moe/observers/router-signals.js';
import type { RoutingDecision } from '../../../shared/routing/policy.js';
import { createRoutingPolicy } from '../../../shared/routing/registry.js';

const MODEL = { numLayers: 2, numExperts: 4, nativeK: 2 };

/** Rows with p1 = 0.4 + 0.5 * u, p2 = (1 - p1) / 2, spreading the signals over a known range. */
function recorderWith(n: number): { recorder: RouterSignalRecorder; probs: Float32Array } {
  const recorder = new RouterSignalRecorder(2, 4);
  const probs = new Float32Array(n * 4);
  for (let t = 0; t < n; t++) {
    const p1 = 0.4 + (0.5 * t) / (n - 1);
    const rest = (1 - p1) / 3;
    probs.set([p1, rest * 1.5, rest, rest * 0.5], t * 4);
  }
  const decision: RoutingDecision = {
    numTokens: n,
    offsets: new Int32Array(n + 1),
    experts: new Int32Array(0),
    weights: new Float32Array(0),
    entropy: Float32Array.from({ length: n }, (_, t) => 1 - t / n),
  };
  recorder.record(0, decision, probs);
  recorder.record(1, decision, probs);
  return { recorder, probs };
}

describe('router signal quantiles', () => {
  it('summarise each signal with exact extremes and monotone quantiles', () => {
    const { recorder } = recorderWith(1001);
    const table = recorder.table(100);
    expect(table.tokens).toBe(1001);
    expect(signalQuantile(table, 0, 'p1', 0)).toBeCloseTo(0.4, 6);
    expect(signalQuantile(table, 0, 'p1', 1)).toBeCloseTo(0.9, 6);
    expect(signalQuantile(table, 0, 'p1', 0.5)).toBeCloseTo(0.65, 3);
    for (const s of ['entropy', 'p1', 'ratio', 'w2'] as const) {
      const values = table.layers[0]![s];
      for (let i = 1; i < values.length; i++) expect(values[i]!).toBeGreaterThanOrEqual(values[i - 1]!);
    }
  });
});

describe('skip rates', () => {
  const { recorder, probs } = recorderWith(2001);
  const table = recorder.table();

  it.each(CALIBRATED_POLICIES)(
    '%s: the realised fraction of K=1 tokens follows the requested rate',
    (policy) => {
      for (const rate of [0, 0.25, 0.5, 0.8, 1]) {
        const config = policyForRates(policy, table, [rate, 1 - rate]);
        const routed = createRoutingPolicy(config, MODEL, 'calibrated');
        for (const layer of [0, 1]) {
          const d = routed.route({ layer, numTokens: 2001, numExperts: 4, probs });
          let ones = 0;
          for (let t = 0; t < 2001; t++) if (d.offsets[t + 1]! - d.offsets[t]! === 1) ones++;
          const want = layer === 0 ? rate : 1 - rate;
          // Entropy here is a synthetic per-token value, not a function of probs: the entropy policy
          // recomputes it from the rows, so only the probability-based signals are held to the rate.
          if (policy !== 'entropy') expect(Math.abs(ones / 2001 - want)).toBeLessThan(0.01);
        }
      }
    },
  );

  it('gives thresholds that never decrease with the rate (fewer experts = looser threshold)', () => {
    for (const policy of CALIBRATED_POLICIES) {
      const ts = [0, 0.2, 0.4, 0.6, 0.8, 1].map((r) => thresholdForRate(policy, table, 0, r));
      const ordered = policy === 'topp' ? [...ts].reverse() : ts;
      for (let i = 1; i < ordered.length; i++) expect(ordered[i]!).toBeGreaterThanOrEqual(ordered[i - 1]!);
    }
  });
});
