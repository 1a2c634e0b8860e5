// A routing profile that passes every check and fails on real hidden states: tau 0.5 skips every
// second expert of the demo model, and its rank-1 linear substitutes multiply by 3e38 (finite
// tables that overflow), for tests of how a routing failing on its own tokens is contained.

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
