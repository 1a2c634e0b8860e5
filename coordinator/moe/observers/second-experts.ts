// What the calibration probes that study a skipped expert share: each token's rank-2 expert run
// alone (weight 1) through the layer's own backend, for the tokens that have one.

import type { ExpertAssignment } from '../../../shared/moe/expert-assignment.js';
import type { F32Tensor } from '../../../shared/tensor.js';
import type { ExpertBackend } from '../expert-backend.js';

export interface SecondExpertOutputs {
  /** [numTokens + 1]: token t has a rank-2 expert iff offsets[t + 1] > offsets[t]. */
  readonly offsets: Int32Array;
  /** The rank-2 expert of each token that has one, in token order. */
  readonly experts: Int32Array;
  /** [numTokens, hidden]: that expert's output (zero rows for tokens without one). */
  readonly y: Float32Array;
}

/** `layer` is the decoder layer the backend computes; undefined when no token has a rank-2 expert. */
export async function secondExpertsAlone(
  backend: ExpertBackend,
  layer: number,
  x: F32Tensor,
  decision: ExpertAssignment,
  hidden: number,
): Promise<SecondExpertOutputs | undefined> {
  const n = decision.numTokens;
  const offsets = new Int32Array(n + 1);
  const second: number[] = [];
  for (let t = 0; t < n; t++) {
    if (decision.offsets[t + 1]! - decision.offsets[t]! >= 2)
      second.push(decision.experts[decision.offsets[t]! + 1]!);
    offsets[t + 1] = second.length;
  }
  if (second.length === 0) return undefined;
  const experts = Int32Array.from(second);
  const y = new Float32Array(n * hidden);
  const single: ExpertAssignment = {
    numTokens: n,
    offsets,
    experts,
    weights: new Float32Array(experts.length).fill(1),
  };
  await backend.compute(layer, x, single, y);
  return { offsets, experts, y };
}
