// Seeded random weights for synthetic checkpoints. Every tensor has its own stream, keyed by
// (seed, tensor name), so its values do not depend on shard size, chunk size or write order and a
// test can regenerate any tensor to compare with what a loader read.

/** Uniform on [-a, a] has standard deviation a / sqrt(3); this gives the 0.02 of HF's initializer_range. */
export const SYNTH_STD = 0.02;
const HALF_WIDTH = SYNTH_STD * Math.sqrt(3);

/** FNV-1a over the UTF-8 bytes of `text`: a 32-bit stream key. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Fills `out` with the next `out.length` bf16 values of a tensor's stream: uniform on
 * [-0.0346, 0.0346] (std 0.02), mulberry32 underneath (one 32-bit state, a few integer ops per
 * value). The fp32 value is truncated to bf16, which is as good as rounding for random data.
 */
export class Bf16Stream {
  #state: number;
  readonly #f32 = new Float32Array(1);
  readonly #u32 = new Uint32Array(this.#f32.buffer);

  constructor(seed: number, tensorName: string) {
    this.#state = fnv1a(`${seed}:${tensorName}`);
  }

  fill(out: Uint16Array): void {
    let a = this.#state;
    const f = this.#f32;
    const u = this.#u32;
    const scale = (2 * HALF_WIDTH) / 4294967296;
    for (let i = 0; i < out.length; i++) {
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      f[0] = ((t ^ (t >>> 14)) >>> 0) * scale - HALF_WIDTH;
      out[i] = u[0]! >>> 16;
    }
    this.#state = a;
  }
}

/**
 * mulberry32: a seeded uniform [0, 1) stream, for what must be the same on every run (benchmark
 * inputs, the projection's sampled steps). Bf16Stream inlines the same steps for speed.
 */
export function mulberry32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The first `count` values of a tensor's stream, as the synthetic checkpoint stores them. */
export function synthValues(seed: number, tensorName: string, count: number): Uint16Array {
  const out = new Uint16Array(count);
  new Bf16Stream(seed, tensorName).fill(out);
  return out;
}
