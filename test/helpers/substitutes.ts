// Random linear substitutes of experts and their forward computed directly in float64, for the
// tests of the JS path (shared/routing) and of the batch graphs (coordinator/moe).

import type { ExpertSubstitutes } from '../../shared/routing/expert-substitutes.js';

/** Deterministic pseudo-random values in [-1, 1). */
export function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

export function randomSubstitutes(
  layers: number,
  experts: number,
  rank: number,
  hidden: number,
): ExpertSubstitutes {
  return {
    layers,
    experts,
    rank,
    hidden,
    down: values(layers * experts * rank * hidden, 1),
    up: values(layers * experts * hidden * rank, 2),
    bias: values(layers * experts * hidden, 3),
  };
}

/** up (down x) + bias of (layer, expert), in float64 from the stored float32 tables. */
export function direct(s: ExpertSubstitutes, layer: number, expert: number, x: Float32Array): number[] {
  const { rank: R, hidden: H } = s;
  const le = layer * s.experts + expert;
  const z = Array.from({ length: R }, (_, r) => {
    let acc = 0;
    for (let i = 0; i < H; i++) acc += s.down[(le * R + r) * H + i]! * x[i]!;
    return acc;
  });
  return Array.from({ length: H }, (_, i) => {
    let acc = s.bias[le * H + i]!;
    for (let r = 0; r < R; r++) acc += s.up[(le * H + i) * R + r]! * z[r]!;
    return acc;
  });
}
