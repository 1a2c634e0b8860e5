// Token sampling from logits: greedy, or temperature + nucleus (top-p) with a seeded generator so a
// request with a seed is reproducible.

export interface SamplingParams {
  /** 0 = greedy. */
  readonly temperature: number;
  /** Nucleus mass in (0, 1]; 1 = no truncation. */
  readonly topP: number;
  readonly seed?: number;
}

export const GREEDY: SamplingParams = { temperature: 0, topP: 1 };

/** The highest temperature accepted, by the API (OpenAI's limit) and the CLI alike. */
export const MAX_TEMPERATURE = 2;

/** Largest seed: every integer in [0, MAX_SEED] gives its own stream (JSON numbers stay exact). */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;

/**
 * xoshiro128** seeded through splitmix32: small, fast, good enough for sampling. Seeds are integers
 * in [0, 2^53): the low 32 bits seed one splitmix stream, the high 21 bits another XORed into the
 * state, so seeds below 2^32 give the streams they always gave and no bit is dropped.
 */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0)
      throw new RangeError(`seed must be an integer in [0, 2^53), got ${seed}`);
    const low = splitmix32(seed >>> 0);
    const high = Math.floor(seed / 2 ** 32);
    const mix = high === 0 ? () => 0 : splitmix32(high);
    this.s0 = (low() ^ mix()) >>> 0;
    this.s1 = (low() ^ mix()) >>> 0;
    this.s2 = (low() ^ mix()) >>> 0;
    this.s3 = (low() ^ mix()) >>> 0;
    // xoshiro's one bad state; unreachable from splitmix in practice, but never stuck at zero.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s3 = 1;
  }

  /** The generator's state, to carry a stream across threads (Rng.fromState continues it). */
  state(): [number, number, number, number] {
    return [this.s0, this.s1, this.s2, this.s3];
  }

  static fromState(state: readonly [number, number, number, number]): Rng {
    const rng = new Rng(0);
    [rng.s0, rng.s1, rng.s2, rng.s3] = state;
    return rng;
  }

  /** Uniform in [0, 1). */
  next(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result / 4294967296;
  }
}

function splitmix32(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export function validateSampling(p: SamplingParams): string | undefined {
  if (!Number.isFinite(p.temperature) || p.temperature < 0 || p.temperature > 100) {
    return `temperature must be a number in [0, 100], got ${p.temperature}`;
  }
  if (!Number.isFinite(p.topP) || p.topP <= 0 || p.topP > 1) return `top_p must be in (0, 1], got ${p.topP}`;
  if (p.seed !== undefined && !(Number.isSafeInteger(p.seed) && p.seed >= 0))
    return `seed must be an integer in [0, 2^53), got ${p.seed}`;
  return undefined;
}

export function argmax(logits: Float32Array, from = 0, count = logits.length - from): number {
  let best = from;
  for (let i = from + 1; i < from + count; i++) if (logits[i]! > logits[best]!) best = i;
  return best - from;
}

/** Picks a token from one row of logits (`row` of width `vocab`). */
export function sampleToken(
  logits: Float32Array,
  row: number,
  vocab: number,
  p: SamplingParams,
  rng: Rng,
): number {
  const from = row * vocab;
  if (p.temperature === 0) return argmax(logits, from, vocab);
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < vocab; i++) max = Math.max(max, logits[from + i]!);
  const probs = new Float64Array(vocab);
  let sum = 0;
  for (let i = 0; i < vocab; i++) {
    const e = Math.exp((logits[from + i]! - max) / p.temperature);
    probs[i] = e;
    sum += e;
  }
  let candidates: number[];
  if (p.topP < 1) {
    const order = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => probs[b]! - probs[a]! || a - b);
    candidates = [];
    let mass = 0;
    for (const i of order) {
      candidates.push(i);
      mass += probs[i]! / sum;
      if (mass >= p.topP) break;
    }
  } else {
    candidates = Array.from({ length: vocab }, (_, i) => i);
  }
  let total = 0;
  for (const i of candidates) total += probs[i]!;
  let r = rng.next() * total;
  for (const i of candidates) {
    r -= probs[i]!;
    if (r < 0) return i;
  }
  return candidates[candidates.length - 1]!;
}
