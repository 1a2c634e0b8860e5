// Test helpers for routing: random router softmaxes (fast-check), random policy configs, a
// deliberately naive reference router (sort everything, then apply the policy's rule as stated in
// the reference README), and distributions with a chosen entropy.

import fc from 'fast-check';
import type { RouterProbs, RoutingDecision, RoutingModel } from '../../../shared/routing/policy.js';
import type { PolicyConfig } from '../../../shared/routing/registry.js';

export const TINY_MIXTRAL: RoutingModel = { numLayers: 4, numExperts: 8, nativeK: 2 };

export function softmax(logits: readonly number[]): number[] {
  const max = Math.max(...logits);
  const exps = logits.map((x) => Math.exp(x - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((x) => x / total);
}

/** Router logits: smooth values, small integers (exact probability ties) and occasional spikes. */
const logitArb = fc.oneof(
  fc.double({ min: -6, max: 6, noNaN: true }),
  fc.integer({ min: -2, max: 2 }),
  fc.constantFrom(-30, 12),
);

export function probsArb(numExperts: number, maxTokens = 24): fc.Arbitrary<Float32Array> {
  return fc
    .array(fc.array(logitArb, { minLength: numExperts, maxLength: numExperts }), {
      minLength: 0,
      maxLength: maxTokens,
    })
    .map((rows) => Float32Array.from(rows.flatMap(softmax)));
}

export function routerInput(layer: number, numExperts: number, probs: Float32Array): RouterProbs {
  return { layer, numTokens: probs.length / numExperts, numExperts, probs };
}

/** Model shapes to route for: mostly small expert counts, sometimes a 64-expert model. */
export const modelArb: fc.Arbitrary<RoutingModel> = fc
  .record({
    numLayers: fc.integer({ min: 1, max: 4 }),
    numExperts: fc.oneof(fc.integer({ min: 2, max: 16 }), fc.constant(64)),
  })
  .chain(({ numLayers, numExperts }) =>
    fc
      .integer({ min: 1, max: Math.min(numExperts, 4) })
      .map((nativeK) => ({ numLayers, numExperts, nativeK })),
  );

const sortedUnique = (values: number[]) => [...new Set(values)].sort((a, b) => a - b);

function ascendingThresholds(count: number): fc.Arbitrary<number[]> {
  return fc
    .uniqueArray(fc.double({ min: 0.01, max: 4.2, noNaN: true }), { minLength: count, maxLength: count })
    .map(sortedUnique)
    .filter((t) => t.length === count);
}

function perLayerOrGlobal<T>(value: fc.Arbitrary<T>, numLayers: number): fc.Arbitrary<T | T[]> {
  return fc.oneof(value, fc.array(value, { minLength: numLayers, maxLength: numLayers }));
}

/** Any valid policy config for the model, global or per-layer. */
export function configArb(model: RoutingModel): fc.Arbitrary<PolicyConfig> {
  const E = model.numExperts;
  const k = fc.integer({ min: 1, max: E });
  const topk = k.map((value): PolicyConfig => ({ kind: 'topk', k: value }));
  const entropy = fc
    .uniqueArray(k, { minLength: 2, maxLength: Math.min(E, 4) })
    .map(sortedUnique)
    .chain((kValues) =>
      fc
        .oneof(
          ascendingThresholds(kValues.length - 1),
          fc.array(ascendingThresholds(kValues.length - 1), {
            minLength: model.numLayers,
            maxLength: model.numLayers,
          }),
        )
        .map((thresholds): PolicyConfig => ({ kind: 'entropy', kValues, thresholds })),
    );
  const p = fc.double({ min: 0.05, max: 1, noNaN: true });
  const range = fc.option(
    fc.tuple(k, k).map(([a, b]) => [Math.min(a, b), Math.max(a, b)] as const),
    {
      nil: undefined,
    },
  );
  const topp = fc
    .tuple(perLayerOrGlobal(p, model.numLayers), range)
    .map(
      ([pValue, r]): PolicyConfig =>
        r === undefined ? { kind: 'topp', p: pValue } : { kind: 'topp', p: pValue, kMin: r[0], kMax: r[1] },
    );
  const beta = fc.double({ min: 0, max: 1, noNaN: true });
  const ratio = fc
    .tuple(perLayerOrGlobal(beta, model.numLayers), fc.option(k, { nil: undefined }))
    .map(
      ([b, kMax]): PolicyConfig =>
        kMax === undefined ? { kind: 'ratio', beta: b } : { kind: 'ratio', beta: b, kMax },
    );
  const skip = perLayerOrGlobal(fc.double({ min: 0, max: 1, noNaN: true }), model.numLayers).map(
    (tau): PolicyConfig => ({ kind: 'skip', tau }),
  );
  return fc.oneof(topk, entropy, topp, ratio, skip);
}

/** The reference rule for K, written straight from the semantics, on a sorted row. */
function referenceK(
  config: PolicyConfig,
  model: RoutingModel,
  layer: number,
  h: number,
  sorted: number[],
): number {
  const at = (value: number | number[]) => (typeof value === 'number' ? value : value[layer]!);
  switch (config.kind) {
    case 'topk':
      return config.k;
    case 'entropy': {
      const t = config.thresholds;
      const thresholds = typeof t[0] === 'number' ? (t as number[]) : (t as number[][])[layer]!;
      const i = thresholds.findIndex((threshold) => h < threshold);
      return config.kValues[i < 0 ? config.kValues.length - 1 : i]!;
    }
    case 'topp': {
      const kMin = config.kMin ?? 1;
      const kMax = config.kMax ?? model.numExperts;
      for (let k = kMin; k <= kMax; k++) {
        const mass = sorted.slice(0, k).reduce((a, b) => a + b, 0);
        if (mass >= at(config.p)) return k;
      }
      return kMax;
    }
    case 'ratio': {
      const kMax = config.kMax ?? model.nativeK;
      const beta = at(config.beta);
      return 1 + sorted.slice(1, kMax).filter((p) => p >= beta * sorted[0]!).length;
    }
    case 'skip': {
      const native = nativeMass(sorted, model);
      return 1 + sorted.slice(1, model.nativeK).filter((p) => p >= at(config.tau) * native).length;
    }
    case 'allocator':
      // Needs expert identities, not only the sorted row: test/shared/routing/allocator.test.ts.
      throw new Error('the allocator reference lives in allocator.test.ts');
  }
}

function nativeMass(sorted: readonly number[], model: RoutingModel): number {
  return sorted.slice(0, model.nativeK).reduce((a, b) => a + b, 0);
}

/** What the kept weights are divided by: their own sum, except `skip`, which keeps native weights. */
export function weightDivisor(
  config: PolicyConfig,
  model: RoutingModel,
  sorted: readonly number[],
  k: number,
): number {
  return config.kind === 'skip' ? nativeMass(sorted, model) : sorted.slice(0, k).reduce((a, b) => a + b, 0);
}

/** Naive router: full sort by (probability desc, index asc), reference K, float64 normalisation. */
export function referenceRoute(
  config: PolicyConfig,
  model: RoutingModel,
  input: RouterProbs,
): { ks: number[]; experts: number[]; weights: number[]; entropy: number[] } {
  const { numTokens, numExperts: E, probs, layer } = input;
  const ks: number[] = [];
  const experts: number[] = [];
  const weights: number[] = [];
  const entropy: number[] = [];
  for (let t = 0; t < numTokens; t++) {
    const row = Array.from(probs.subarray(t * E, (t + 1) * E));
    let sum = 0;
    for (const p of row) sum += p * Math.log(p + 1e-9);
    const h = -sum;
    const order = row.map((_, j) => j).sort((a, b) => row[b]! - row[a]! || a - b);
    const sorted = order.map((j) => row[j]!);
    const k = referenceK(config, model, layer, h, sorted);
    const kept = weightDivisor(config, model, sorted, k);
    ks.push(k);
    for (let i = 0; i < k; i++) {
      experts.push(order[i]!);
      weights.push(Math.fround(sorted[i]! / kept));
    }
    entropy.push(Math.fround(Math.max(0, h)));
  }
  return { ks, experts, weights, entropy };
}

export function decisionKs(decision: RoutingDecision): number[] {
  return Array.from(
    { length: decision.numTokens },
    (_, t) => decision.offsets[t + 1]! - decision.offsets[t]!,
  );
}

/** Experts/weights of token t. */
export function tokenSlice(decision: RoutingDecision, t: number): { experts: number[]; weights: number[] } {
  const from = decision.offsets[t]!;
  const to = decision.offsets[t + 1]!;
  return {
    experts: Array.from(decision.experts.subarray(from, to)),
    weights: Array.from(decision.weights.subarray(from, to)),
  };
}

export function entropyOf(row: ArrayLike<number>): number {
  let sum = 0;
  for (let j = 0; j < row.length; j++) sum += row[j]! * Math.log(row[j]! + 1e-9);
  return -sum;
}

/**
 * A float32 softmax over E experts with router entropy close to `target` nats (0 < target < ln E):
 * p_j ∝ exp(-j / temperature), temperature found by bisection, so probabilities are distinct and
 * descend with the expert index.
 */
export function rowWithEntropy(numExperts: number, target: number): Float32Array {
  const row = (temperature: number) =>
    Float32Array.from(softmax(Array.from({ length: numExperts }, (_, j) => -j / temperature)));
  let lo = 1e-3;
  let hi = 1e3;
  for (let i = 0; i < 200; i++) {
    const mid = Math.sqrt(lo * hi);
    if (entropyOf(row(mid)) < target) lo = mid;
    else hi = mid;
  }
  return row(Math.sqrt(lo * hi));
}
