// Which live replica computes each (token, expert) pair of a layer's batch. Two rules:
// - baseline: every expert whole to one holder, the least loaded so far in the batch
//   (PlacementTable.assign), same-worker dedup not considered;
// - k-aware: greedy, token by token: experts with one live holder go there; each replicated pair
//   then goes to the holder with the lowest expected cost after taking it, where cost counts pairs
//   (K per token) times the worker's relative service time, plus what it has in flight, and a
//   holder that already receives this token gets a bonus (its hidden state is sent once anyway).
//   An expert's tokens may so be split across its replicas. O(pairs x holders) per batch.

import type { ExpertAssignment } from '../../shared/moe/expert-assignment.js';
import type { PlacementTable } from './placement.js';

export const BALANCE_RULES = ['baseline', 'k-aware'] as const;
export type BalanceRule = (typeof BALANCE_RULES)[number];
export const DEFAULT_BALANCE_RULE: BalanceRule = 'k-aware';

/**
 * What sending a token's hidden state to one more worker is worth, in pairs of compute: the k-aware
 * rule keeps a pair with the token's other experts unless that worker's expected cost is more
 * than this many pairs above the alternative's. It bounds the imbalance on symmetric replicas to
 * DEDUP_BONUS + 1 pairs.
 */
export const DEDUP_BONUS = 2;

export interface WorkerCosts {
  /** Relative service time per pair of each worker (1 = typical), from measured round trips. */
  readonly perPair: ArrayLike<number>;
  /** Pairs each worker has in flight from this coordinator, not yet answered. */
  readonly inflight: ArrayLike<number>;
}

export function equalCosts(numWorkers: number): WorkerCosts {
  return { perPair: new Float64Array(numWorkers).fill(1), inflight: new Float64Array(numWorkers) };
}

/**
 * pairWorker[j] = the worker computing pair j of `pairs` (indexing `pairs.experts`), always a live
 * holder of that pair's expert. Throws PlacementError naming the experts no live worker holds.
 */
export function assignPairs(
  rule: BalanceRule,
  table: PlacementTable,
  pairs: ExpertAssignment,
  live: readonly boolean[],
  costs: WorkerCosts,
): Int32Array {
  const first = pairs.offsets[0]!;
  const total = pairs.offsets[pairs.numTokens]!;
  const out = new Int32Array(total);
  if (rule === 'baseline') {
    const byExpert = table.assign(pairs, live);
    for (let j = first; j < total; j++) out[j] = byExpert[pairs.experts[j]!]!;
    return out;
  }
  table.checkCovered(pairs, live);
  const W = table.workers.length;
  const liveHolders: (readonly number[] | undefined)[] = new Array(table.numExperts);
  const holdersOf = (e: number): readonly number[] => {
    let h = liveHolders[e];
    if (h === undefined) {
      h = table.holdersOf(e).filter((w) => live[w]);
      liveHolders[e] = h;
    }
    return h;
  };
  const load = new Float64Array(W);
  for (let w = 0; w < W; w++) load[w] = (costs.inflight[w] ?? 0) * (costs.perPair[w] ?? 1);
  // stamp[w] === t: token t already goes to worker w.
  const stamp = new Int32Array(W).fill(-1);
  for (let t = 0; t < pairs.numTokens; t++) {
    const start = pairs.offsets[t]!;
    const end = pairs.offsets[t + 1]!;
    for (let j = start; j < end; j++) {
      const h = holdersOf(pairs.experts[j]!);
      if (h.length !== 1) continue;
      const w = h[0]!;
      out[j] = w;
      load[w]! += costs.perPair[w] ?? 1;
      stamp[w] = t;
    }
    for (let j = start; j < end; j++) {
      const h = holdersOf(pairs.experts[j]!);
      if (h.length === 1) continue;
      let best = -1;
      let bestScore = Number.POSITIVE_INFINITY;
      for (const w of h) {
        const score = load[w]! + (costs.perPair[w] ?? 1) - (stamp[w] === t ? DEDUP_BONUS : 0);
        if (score < bestScore) {
          best = w;
          bestScore = score;
        }
      }
      out[j] = best;
      load[best]! += costs.perPair[best] ?? 1;
      stamp[best] = t;
    }
  }
  return out;
}

/** Per worker, the expected cost of a batch assigned as `pairWorker`: pairs x relative service time. */
export function batchCosts(pairWorker: Int32Array, numWorkers: number, costs: WorkerCosts): Float64Array {
  const out = new Float64Array(numWorkers);
  for (let j = 0; j < pairWorker.length; j++) out[pairWorker[j]!]! += 1;
  for (let w = 0; w < numWorkers; w++) out[w]! *= costs.perPair[w] ?? 1;
  return out;
}

/** max / mean of `costs` over the live workers; 1 when nothing was assigned. */
export function imbalance(costs: ArrayLike<number>, live: readonly boolean[]): number {
  let max = 0;
  let sum = 0;
  let n = 0;
  for (let w = 0; w < costs.length; w++) {
    if (!live[w]) continue;
    n++;
    sum += costs[w]!;
    if (costs[w]! > max) max = costs[w]!;
  }
  return sum === 0 ? 1 : (max * n) / sum;
}
