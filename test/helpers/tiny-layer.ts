// One MoE layer's inputs for tests that drive RemoteExpertBackend.compute against real workers of
// the demo model (models/tiny-mixtral: 4 layers, 8 experts, hidden 256, top-2).

import type { ExpertAssignment } from '../../shared/moe/expert-assignment.js';
import type { DecodeLimits } from '../../shared/protocol/codec.js';
import { type F32Tensor, f32 } from '../../shared/tensor.js';

export const TINY_HIDDEN = 256;
export const TINY_MODEL = { numLayers: 4, numExperts: 8, hidden: TINY_HIDDEN, nativeK: 2 } as const;
/** What a relay in front of such a worker decodes frames with (no frame is too large). */
export const TINY_DECODE_LIMITS: DecodeLimits = {
  maxFrameBytes: 1 << 30,
  hidden: TINY_HIDDEN,
  numExperts: TINY_MODEL.numExperts,
  numLayers: TINY_MODEL.numLayers,
};

/** Deterministic hidden states of moderate size (what a layer norm gives), `tokens` rows. */
export function layerInput(tokens: number): F32Tensor {
  return f32(
    [tokens, TINY_HIDDEN],
    Float32Array.from({ length: tokens * TINY_HIDDEN }, (_, i) => Math.sin(i * 0.37) * 0.8),
  );
}

/** Every one of `tokens` tokens to experts 0 and 1, with weight 0.5 each. */
export function toExperts01(tokens: number): ExpertAssignment {
  return {
    numTokens: tokens,
    offsets: Int32Array.from({ length: tokens + 1 }, (_, t) => 2 * t),
    experts: Int32Array.from({ length: 2 * tokens }, (_, j) => j % 2),
    weights: Float32Array.from({ length: 2 * tokens }, () => 0.5),
  };
}
