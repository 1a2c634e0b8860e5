// Turns one layer's (token, expert, weight) triples and an expert -> worker assignment into one
// share per worker: the distinct tokens it needs (each once, however many of its experts the token
// uses there) and, per token, the (expert, weight) pairs it must compute.

import type { ExpertAssignment } from '../../shared/moe/expert-assignment.js';

export interface WorkerShare {
  readonly worker: number;
  /** Rows of the layer input this worker needs, ascending. */
  readonly tokens: Int32Array;
  /** CSR over `tokens`, [tokens.length + 1]. */
  readonly offsets: Int32Array;
  readonly experts: Int32Array;
  readonly weights: Float32Array;
}

/** Per worker, how many distinct tokens and pairs it would receive: accounting without building shares. */
export function shareSizes(
  pairs: ExpertAssignment,
  assignment: Int32Array,
  numWorkers: number,
): { tokens: Int32Array; pairs: Int32Array } {
  const tokens = new Int32Array(numWorkers);
  const counts = new Int32Array(numWorkers);
  const lastToken = new Int32Array(numWorkers).fill(-1);
  for (let t = 0; t < pairs.numTokens; t++) {
    for (let j = pairs.offsets[t]!; j < pairs.offsets[t + 1]!; j++) {
      const w = assignment[pairs.experts[j]!]!;
      if (w < 0) throw new RangeError(`expert ${pairs.experts[j]} has no worker assigned`);
      counts[w]!++;
      if (lastToken[w] !== t) {
        lastToken[w] = t;
        tokens[w]!++;
      }
    }
  }
  return { tokens, pairs: counts };
}

/** The shares of the workers that get at least one pair, in worker order. */
export function planDispatch(
  pairs: ExpertAssignment,
  assignment: Int32Array,
  numWorkers: number,
): WorkerShare[] {
  const sizes = shareSizes(pairs, assignment, numWorkers);
  const shares: {
    worker: number;
    tokens: Int32Array;
    offsets: Int32Array;
    experts: Int32Array;
    weights: Float32Array;
    n: number;
    p: number;
  }[] = [];
  const slot = new Int32Array(numWorkers).fill(-1);
  for (let w = 0; w < numWorkers; w++) {
    if (sizes.pairs[w] === 0) continue;
    slot[w] = shares.length;
    shares.push({
      worker: w,
      tokens: new Int32Array(sizes.tokens[w]!),
      offsets: new Int32Array(sizes.tokens[w]! + 1),
      experts: new Int32Array(sizes.pairs[w]!),
      weights: new Float32Array(sizes.pairs[w]!),
      n: 0,
      p: 0,
    });
  }
  for (let t = 0; t < pairs.numTokens; t++) {
    for (let j = pairs.offsets[t]!; j < pairs.offsets[t + 1]!; j++) {
      const s = shares[slot[assignment[pairs.experts[j]!]!]!]!;
      if (s.n === 0 || s.tokens[s.n - 1] !== t) {
        s.tokens[s.n] = t;
        s.offsets[s.n] = s.p;
        s.n++;
      }
      s.experts[s.p] = pairs.experts[j]!;
      s.weights[s.p] = pairs.weights[j]!;
      s.p++;
    }
  }
  return shares.map((s) => {
    s.offsets[s.n] = s.p;
    return { worker: s.worker, tokens: s.tokens, offsets: s.offsets, experts: s.experts, weights: s.weights };
  });
}
