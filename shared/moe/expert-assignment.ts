// The one token -> expert table of the MoE seam: which experts each token of a batch goes to and
// with which combine weight, as CSR over tokens. Routing policies produce it, dispatch splits it per
// worker, the wire protocol carries it and the expert host computes it.

/**
 * Token t uses experts[offsets[t] .. offsets[t + 1]) with the same-index weights. Producers state
 * their own order (routing policies: descending probability); consumers never depend on it.
 */
export interface ExpertAssignment {
  readonly numTokens: number;
  /** [numTokens + 1], offsets[0] = 0, non-decreasing. */
  readonly offsets: Int32Array;
  /** [offsets[numTokens]] expert indices. */
  readonly experts: Int32Array;
  /** [offsets[numTokens]] combine weights. */
  readonly weights: Float32Array;
}

/** Token-expert pairs in the assignment. */
export function pairCount(a: ExpertAssignment): number {
  return a.offsets[a.numTokens]!;
}
