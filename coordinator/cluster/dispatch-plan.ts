// Turns one layer's (token, expert, weight) triples and a pair -> worker assignment into one
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
  pairWorker: Int32Array,
  numWorkers: number,
): { tokens: Int32Array; pairs: Int32Array } {
  const tokens = new Int32Array(numWorkers);
  const counts = new Int32Array(numWorkers);
  const lastToken = new Int32Array(numWorkers).fill(-1);
  for (let t = 0; t < pairs.numTokens; t++) {
    for (let j = pairs.offsets[t]!; j < pairs.offsets[t + 1]!; j++) {
      const w = pairWorker[j]!;
      if (w < 0) throw new RangeError(`pair ${j} (expert ${pairs.experts[j]}) has no worker assigned`);
      counts[w]!++;
      if (lastToken[w] !== t) {
        lastToken[w] = t;
        tokens[w]!++;
      }
    }
  }
  return { tokens, pairs: counts };
}

/** pairWorker[j] = assignment[expert of pair j]: an expert -> worker assignment, per pair. */
export function pairsOfExperts(pairs: ExpertAssignment, assignment: Int32Array): Int32Array {
  const total = pairs.offsets[pairs.numTokens]!;
  const out = new Int32Array(total);
  for (let j = 0; j < total; j++) out[j] = assignment[pairs.experts[j]!]!;
  return out;
}

/** The shares of the workers that get at least one pair, in worker order. */
export function planDispatch(
  pairs: ExpertAssignment,
  pairWorker: Int32Array,
  numWorkers: number,
): WorkerShare[] {
  const sizes = shareSizes(pairs, pairWorker, numWorkers);
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
      const s = shares[slot[pairWorker[j]!]!]!;
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

/** The pairs of `shares` as one assignment over the layer's `numTokens` rows (rows may be empty). */
export function mergeShares(numTokens: number, shares: readonly WorkerShare[]): ExpertAssignment {
  const count = new Int32Array(numTokens + 1);
  for (const s of shares)
    for (let r = 0; r < s.tokens.length; r++) count[s.tokens[r]! + 1]! += s.offsets[r + 1]! - s.offsets[r]!;
  for (let t = 0; t < numTokens; t++) count[t + 1]! += count[t]!;
  const offsets = Int32Array.from(count);
  const experts = new Int32Array(offsets[numTokens]!);
  const weights = new Float32Array(offsets[numTokens]!);
  const fill = count.subarray(0, numTokens);
  for (const s of shares)
    for (let r = 0; r < s.tokens.length; r++) {
      const t = s.tokens[r]!;
      for (let j = s.offsets[r]!; j < s.offsets[r + 1]!; j++) {
        experts[fill[t]!] = s.experts[j]!;
        weights[fill[t]!] = s.weights[j]!;
        fill[t]!++;
      }
    }
  return { numTokens, offsets, experts, weights };
}

/**
 * Where to cut a share's rows so that each piece's request fits: boundaries [0, ..., rows] over the
 * CSR `offsets` (rows + 1 entries), each piece the longest run of rows from the previous cut that
 * `fits(rows, pairs)` accepts, found row by row (`fits` is called once per row and once per piece:
 * make it cheap). One piece when the whole fits. `tooLarge` names the first row that does not fit
 * even alone.
 */
export function cutRows(
  offsets: Int32Array,
  fits: (rows: number, pairs: number) => boolean,
): { readonly cuts: Int32Array } | { readonly tooLarge: number } {
  const rows = offsets.length - 1;
  const cuts: number[] = [0];
  let from = 0;
  while (from < rows) {
    let to = from;
    while (to < rows && fits(to + 1 - from, offsets[to + 1]! - offsets[from]!)) to++;
    if (to === from) return { tooLarge: from };
    cuts.push(to);
    from = to;
  }
  return { cuts: Int32Array.from(cuts) };
}

/** Rows [from, to) of `share` as a share of their own (views of its arrays; offsets rebased). */
export function sliceShare(share: WorkerShare, from: number, to: number): WorkerShare {
  const first = share.offsets[from]!;
  const last = share.offsets[to]!;
  const offsets = share.offsets.slice(from, to + 1);
  for (let r = 0; r < offsets.length; r++) offsets[r]! -= first;
  return {
    worker: share.worker,
    tokens: share.tokens.subarray(from, to),
    offsets,
    experts: share.experts.subarray(first, last),
    weights: share.weights.subarray(first, last),
  };
}
