// Axis tick generation for benchmark figures: "nice" 1-2-5 steps on linear axes, 1-2-5 or
// powers of ten on log axes, and labels with just enough decimals to tell ticks apart.

export interface Ticks {
  /** Axis domain, snapped outward to the first and last tick so the data never touches a gap. */
  readonly min: number;
  readonly max: number;
  readonly values: readonly number[];
  readonly labels: readonly string[];
}

// Ratios at which a rough step rounds up to the next nice value; the geometric midpoints between
// 1, 2, 5 and 10 (the same choice d3-array makes), so the tick count stays close to the target.
const ROUND_TO_10 = Math.sqrt(50);
const ROUND_TO_5 = Math.sqrt(10);
const ROUND_TO_2 = Math.sqrt(2);
// Quotients such as 0.3 / 0.1 come out as 2.9999999999999996; without this slack the domain
// would snap one whole step further out than needed.
const SNAP_EPS = 1e-9;

/** Ticks on a linear axis covering [lo, hi] with roughly `target` intervals. */
export function linearTicks(lo: number, hi: number, target = 5): Ticks {
  checkRange(lo, hi);
  [lo, hi] = padDegenerate(lo, hi);
  const rough = (hi - lo) / Math.max(1, target);
  let power = Math.floor(Math.log10(rough));
  const ratio = rough / 10 ** power;
  let factor = ratio >= ROUND_TO_10 ? 10 : ratio >= ROUND_TO_5 ? 5 : ratio >= ROUND_TO_2 ? 2 : 1;
  if (factor === 10) {
    factor = 1;
    power += 1;
  }
  const step = factor * 10 ** power;
  const decimals = Math.max(0, -power);
  const first = Math.floor(lo / step + SNAP_EPS);
  const last = Math.ceil(hi / step - SNAP_EPS);
  const values: number[] = [];
  // Integer multiples of the step, rounded to the step's decimals, keep 0.1 * 3 from printing
  // as 0.30000000000000004 and make every tick exactly representable in its label.
  for (let i = first; i <= last; i++) values.push(roundTo(i * step, decimals));
  const largest = siScale(Math.max(Math.abs(values[0]!), Math.abs(values[values.length - 1]!)));
  // A suffix only helps while it saves digits: 1000000.1 .. 1000000.5 reads better unscaled.
  const scale = step >= largest.divisor / 1000 ? largest : siScale(0);
  const labelDecimals = Math.max(0, -Math.floor(Math.log10(step / scale.divisor) + SNAP_EPS));
  // Zero gets no suffix ("0", not "0.0M") but keeps the decimals of its neighbours otherwise.
  const labels = values.map((v) =>
    v === 0 && scale.suffix !== '' ? '0' : (v / scale.divisor).toFixed(labelDecimals) + scale.suffix,
  );
  return { min: values[0]!, max: values[values.length - 1]!, values, labels };
}

/**
 * Ticks on a log10 axis covering [lo, hi] (both > 0). Spans under one decade get 1..9 x 10^k,
 * up to three decades get 1-2-5 (so concurrency 1, 2, 4 ... 64 reads naturally), wider spans
 * powers of ten, thinned so there are at most about eight.
 */
export function logTicks(lo: number, hi: number): Ticks {
  checkRange(lo, hi);
  if (lo <= 0) throw new RangeError(`log axis needs positive values, got ${lo}`);
  if (lo === hi) {
    lo /= 2;
    hi *= 2;
  }
  const decades = Math.log10(hi / lo);
  const mantissas = decades < 1 ? [1, 2, 3, 4, 5, 6, 7, 8, 9] : decades <= 3 ? [1, 2, 5] : [1];
  const stride = mantissas.length === 1 ? Math.max(1, Math.ceil(decades / 8)) : 1;
  const pLo = Math.floor(Math.log10(lo)) - 1;
  const pHi = Math.ceil(Math.log10(hi)) + 1;
  const candidates: number[] = [];
  for (let p = Math.floor(pLo / stride) * stride; p <= pHi + stride; p += stride) {
    for (const m of mantissas) candidates.push(Number((m * 10 ** p).toPrecision(12)));
  }
  const min = Math.max(...candidates.filter((c) => c <= lo * (1 + SNAP_EPS)));
  const max = Math.min(...candidates.filter((c) => c >= hi * (1 - SNAP_EPS)));
  const values = candidates.filter((c) => c >= min && c <= max);
  return { min, max, values, labels: values.map((v) => formatCompact(v)) };
}

/** A value in at most `digits` significant digits, with k/M/G for large magnitudes. */
export function formatCompact(value: number, digits = 4): string {
  if (value === 0) return '0';
  const scale = siScale(Math.abs(value));
  return String(Number((value / scale.divisor).toPrecision(digits))) + scale.suffix;
}

function siScale(magnitude: number): { divisor: number; suffix: string } {
  // Below 10^4 plain digits stay readable ("2048"); above, "1.5M" beats "1500000".
  if (magnitude >= 1e9) return { divisor: 1e9, suffix: 'G' };
  if (magnitude >= 1e6) return { divisor: 1e6, suffix: 'M' };
  if (magnitude >= 1e4) return { divisor: 1e3, suffix: 'k' };
  return { divisor: 1, suffix: '' };
}

function checkRange(lo: number, hi: number): void {
  if (!Number.isFinite(lo) || !Number.isFinite(hi))
    throw new RangeError(`axis range [${lo}, ${hi}] is not finite`);
  if (lo > hi) throw new RangeError(`axis range [${lo}, ${hi}] is reversed`);
  if (!Number.isFinite(hi - lo)) throw new RangeError(`axis range [${lo}, ${hi}] is too wide to draw`);
}

/** A range of zero width (one point, or all values equal) gets 10% either side, or +-1 around 0. */
function padDegenerate(lo: number, hi: number): [number, number] {
  if (lo !== hi) return [lo, hi];
  const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
  return [lo - pad, hi + pad];
}

function roundTo(value: number, decimals: number): number {
  return Number(value.toFixed(Math.min(decimals, 100)));
}
