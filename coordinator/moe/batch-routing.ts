// Applies routing policies to the router probabilities of one MoE layer for a whole batch. Tokens of
// different sequences may carry different policies (per-request routing); each policy sees only its
// own rows and the decisions are merged back into one CSR in row order.

import { RoutingInputError } from '../../shared/routing/errors.js';
import type { RouterProbs, RoutingDecision, RoutingPolicy } from '../../shared/routing/policy.js';
import { RoutingFailedInBatchError } from './errors.js';

/** Row ranges [start, end) of each item in the compacted token rows, with the item's policy. */
export interface RoutedSpan {
  readonly start: number;
  readonly end: number;
  readonly policy: RoutingPolicy;
}

/**
 * `layer` is the MoE layer index the policies are indexed by; `select` the selection scores
 * (router_select) when the layer's rule has a selection bias; `x` the experts' input rows
 * [numTokens, hidden] (for policies whose prior reads them).
 */
export function routeBatch(
  layer: number,
  probs: Float32Array,
  numTokens: number,
  numExperts: number,
  spans: readonly RoutedSpan[],
  select?: Float32Array,
  x?: Float32Array,
): RoutingDecision {
  const policies = new Set(spans.map((s) => s.policy));
  if (policies.size === 1) {
    const [policy] = policies;
    const all = Int32Array.from({ length: numTokens }, (_, t) => t);
    return routeOrBlame(policy!, layer, spans, all, {
      layer,
      numTokens,
      numExperts,
      probs,
      ...(select ? { select } : {}),
      ...(x ? { x } : {}),
    });
  }
  const hidden = x ? x.length / Math.max(numTokens, 1) : 0;
  const offsets = new Int32Array(numTokens + 1);
  const parts: { rows: Int32Array; decision: RoutingDecision }[] = [];
  for (const policy of policies) {
    const mine = spans.filter((s) => s.policy === policy);
    const count = mine.reduce((n, s) => n + s.end - s.start, 0);
    const rows = new Int32Array(count);
    const sub = new Float32Array(count * numExperts);
    const subSelect = select ? new Float32Array(count * numExperts) : undefined;
    const subX = x ? new Float32Array(count * hidden) : undefined;
    let r = 0;
    for (const s of mine) {
      for (let t = s.start; t < s.end; t++, r++) {
        rows[r] = t;
        sub.set(probs.subarray(t * numExperts, (t + 1) * numExperts), r * numExperts);
        subSelect?.set(select!.subarray(t * numExperts, (t + 1) * numExperts), r * numExperts);
        subX?.set(x!.subarray(t * hidden, (t + 1) * hidden), r * hidden);
      }
    }
    const decision = routeOrBlame(policy, layer, spans, rows, {
      layer,
      numTokens: count,
      numExperts,
      probs: sub,
      ...(subSelect ? { select: subSelect } : {}),
      ...(subX ? { x: subX } : {}),
    });
    for (let i = 0; i < count; i++) offsets[rows[i]! + 1] = decision.offsets[i + 1]! - decision.offsets[i]!;
    parts.push({ rows, decision });
  }
  for (let t = 0; t < numTokens; t++) offsets[t + 1]! += offsets[t]!;
  const total = offsets[numTokens]!;
  const experts = new Int32Array(total);
  const weights = new Float32Array(total);
  const entropy = new Float32Array(numTokens);
  const withPrior = parts.find((p) => p.decision.prior !== undefined);
  const width = withPrior ? withPrior.decision.prior!.length / withPrior.rows.length : 0;
  const prior = withPrior ? new Float32Array(numTokens * width) : undefined;
  for (const { rows, decision } of parts) {
    if (prior && decision.prior) {
      for (let i = 0; i < rows.length; i++) {
        prior.set(decision.prior.subarray(i * width, (i + 1) * width), rows[i]! * width);
      }
    }
    for (let i = 0; i < rows.length; i++) {
      const t = rows[i]!;
      const from = decision.offsets[i]!;
      const k = decision.offsets[i + 1]! - from;
      experts.set(decision.experts.subarray(from, from + k), offsets[t]!);
      weights.set(decision.weights.subarray(from, from + k), offsets[t]!);
      entropy[t] = decision.entropy[i]!;
    }
  }
  return prior
    ? { numTokens, offsets, experts, weights, entropy, prior }
    : { numTokens, offsets, experts, weights, entropy };
}

/**
 * policy.route(input), where input row i is batch row rows[i]. A RoutingInputError is the batch
 * items' fault, not the batch's: it becomes a RoutingFailedInBatchError naming the span of the
 * token at fault (every span of this policy when no single token is to blame), its message
 * counting that token within the span.
 */
function routeOrBlame(
  policy: RoutingPolicy,
  layer: number,
  spans: readonly RoutedSpan[],
  rows: Int32Array,
  input: RouterProbs,
): RoutingDecision {
  try {
    return policy.route(input);
  } catch (err) {
    if (!(err instanceof RoutingInputError)) throw err;
    const row = err.token === undefined ? undefined : rows[err.token];
    const blamed: number[] = [];
    spans.forEach((sp, i) => {
      if (sp.policy !== policy) return;
      if (row === undefined || (row >= sp.start && row < sp.end)) blamed.push(i);
    });
    // The error counts the policy's rows of the whole batch; the item at fault is told its own token.
    const own = row === undefined ? err : err.countedFrom(err.token! - (row - spans[blamed[0]!]!.start));
    throw new RoutingFailedInBatchError(layer, blamed, own);
  }
}
