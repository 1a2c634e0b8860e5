// A deterministic 32-bit generator (mulberry32) for property tests: the cases are the same on every
// run, so a failure names a case that can be run again.

/** Unsigned 32-bit integers from `seed`. */
export function seededUint32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Uniform numbers in [0, 1) from `seed`. */
export function seededUniform(seed: number): () => number {
  const next = seededUint32(seed);
  return () => next() / 4294967296;
}
