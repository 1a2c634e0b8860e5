// Router signals of a calibration corpus under native routing, per MoE layer: the quantities each
// adaptive-K policy thresholds (entropy, top-1 probability, p2/p1, the 2nd expert's native weight),
// measured as the policies measure them under the model's rule (normalised scores in ranking order;
// the native weight before the routed scaling factor),
// summarised as quantile tables so a threshold for any target rate of K=1 is one lookup. A calibration
// probe: it observes the MoE seam on the engine thread; calibration reads its table.

import type { RouterRule, RoutingDecision } from '../../../shared/routing/policy.js';
import type { MoeLayerEvent, MoeObserver } from '../observer.js';

export const SIGNALS = ['entropy', 'p1', 'ratio', 'w2'] as const;
export type SignalName = (typeof SIGNALS)[number];

/** Per layer, for each signal, its quantiles at 0, 1/Q, ..., 1 over every token seen. */
export interface RouterSignalTable {
  readonly tokens: number;
  readonly points: number;
  readonly layers: Record<SignalName, number[]>[];
}

class GrowableF32 {
  private data = new Float32Array(1 << 16);
  length = 0;

  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float32Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }

  sorted(): Float32Array {
    return this.data.slice(0, this.length).sort();
  }
}

export class RouterSignalRecorder implements MoeObserver {
  private readonly values: Record<SignalName, GrowableF32>[];
  private tokens = 0;

  constructor(
    private readonly numLayers: number,
    private readonly numExperts: number,
  ) {
    this.values = Array.from({ length: numLayers }, () => ({
      entropy: new GrowableF32(),
      p1: new GrowableF32(),
      ratio: new GrowableF32(),
      w2: new GrowableF32(),
    }));
  }

  observe(e: MoeLayerEvent): void {
    this.record(e.moeLayer, e.decision, e.probs, e.plan);
  }

  /**
   * `layer` is the MoE layer index. With a decision of at least 2 experts for a token (native
   * routing), rank 1 and 2 are the decision's and w2 its rank-2 weight over the scaling factor (the
   * native weight, whatever the rule); otherwise the two largest scores, w2 = p2 / (p1 + p2).
   */
  record(
    layer: number,
    decision: RoutingDecision,
    probs: Float32Array,
    rule: Pick<RouterRule, 'gate' | 'routedScalingFactor'> = { gate: 'softmax', routedScalingFactor: 1 },
  ): void {
    const E = this.numExperts;
    const v = this.values[layer]!;
    if (layer === 0) this.tokens += decision.numTokens;
    for (let t = 0; t < decision.numTokens; t++) {
      let p1 = -1;
      let p2 = -1;
      let w2: number;
      const from = decision.offsets[t]!;
      if (decision.offsets[t + 1]! - from >= 2) {
        p1 = probs[t * E + decision.experts[from]!]!;
        p2 = probs[t * E + decision.experts[from + 1]!]!;
        w2 = decision.weights[from + 1]! / rule.routedScalingFactor;
      } else {
        for (let e = 0; e < E; e++) {
          const p = probs[t * E + e]!;
          if (p > p1) {
            p2 = p1;
            p1 = p;
          } else if (p > p2) p2 = p;
        }
        w2 = p1 + p2 > 0 ? p2 / (p1 + p2) : 0;
      }
      if (rule.gate === 'sigmoid') {
        // Sigmoid scores are measured as a distribution, as the routing kernel does.
        let sum = 0;
        for (let e = 0; e < E; e++) sum += probs[t * E + e]!;
        p1 = sum > 0 ? p1 / sum : 0;
        p2 = sum > 0 ? p2 / sum : 0;
      }
      v.entropy.push(decision.entropy[t]!);
      v.p1.push(p1);
      v.ratio.push(p1 > 0 ? p2 / p1 : 0);
      v.w2.push(w2);
    }
  }

  table(points = 1000): RouterSignalTable {
    const layers = this.values.map((v) => {
      const out = {} as Record<SignalName, number[]>;
      for (const name of SIGNALS) {
        const sorted = v[name].sorted();
        out[name] = Array.from({ length: points + 1 }, (_, i) =>
          sorted.length === 0
            ? 0
            : sorted[Math.min(sorted.length - 1, Math.round((i / points) * (sorted.length - 1)))]!,
        );
      }
      return out;
    });
    return { tokens: this.tokens, points, layers: layers.slice(0, this.numLayers) };
  }
}

/** The signal value below which a fraction q of tokens fall (linear between table points). */
export function signalQuantile(
  table: RouterSignalTable,
  layer: number,
  signal: SignalName,
  q: number,
): number {
  const values = table.layers[layer]?.[signal];
  if (!values) throw new RangeError(`no router signals for layer ${layer}`);
  const x = Math.min(1, Math.max(0, q)) * table.points;
  const i = Math.floor(x);
  if (i >= table.points) return values[table.points]!;
  return values[i]! + (values[i + 1]! - values[i]!) * (x - i);
}
