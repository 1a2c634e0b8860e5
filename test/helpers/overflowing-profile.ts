// A routing profile that passes every check and fails on real hidden states: tau 0.5 skips every
// second expert of the demo model, and its rank-1 linear substitutes multiply by 3e38 (finite
// tables that overflow), for tests of how a routing failing on its own tokens is contained.

import { encodeExpertMeans } from '../../shared/routing/expert-means.js';
import { encodeExpertSubstitutes } from '../../shared/routing/expert-substitutes.js';

export function overflowingSubstituteProfile(hidden = 256): Record<string, unknown> {
  const size = 4 * 8 * hidden;
  return {
    kmoeRoutingProfile: 3,
    policy: {
      kind: 'skip',
      tau: 0.5,
      expertSubstitutes: encodeExpertSubstitutes({
        layers: 4,
        experts: 8,
        rank: 1,
        hidden,
        down: new Float32Array(size).fill(3e38),
        up: new Float32Array(size).fill(1),
        bias: new Float32Array(size),
      }),
    },
  };
}

/**
 * Skips as above with expert means of 1e20: every value finite, every prior finite, and the hidden
 * states overflow a layer later (RMSNorm squares them), so the logits come out NaN.
 */
export function overflowingMeansProfile(hidden = 256): Record<string, unknown> {
  return {
    kmoeRoutingProfile: 1,
    policy: {
      kind: 'skip',
      tau: 0.5,
      expertMeans: encodeExpertMeans({
        layers: 4,
        experts: 8,
        hidden,
        data: new Float32Array(4 * 8 * hidden).fill(1e20),
      }),
    },
  };
}
