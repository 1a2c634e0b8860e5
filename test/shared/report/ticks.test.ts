// Axis ticks: nice 1-2-5 steps that cover the data, labels that tell ticks apart, and log axes
// that read naturally for concurrency sweeps and multi-decade ranges.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatCompact, linearTicks, logTicks } from '../../../shared/report/ticks.js';

describe('linearTicks', () => {
  it('uses 1-2-5 steps with just enough decimals', () => {
    expect(linearTicks(0, 1)).toEqual({
      min: 0,
      max: 1,
      values: [0, 0.2, 0.4, 0.6, 0.8, 1],
      labels: ['0.0', '0.2', '0.4', '0.6', '0.8', '1.0'],
    });
    // 0.3 / 0.1 is 2.9999999999999996 in floating point; the domain must still start at 0.3.
    expect(linearTicks(0.3, 0.71).values).toEqual([0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
    expect(linearTicks(3, 97).values).toEqual([0, 20, 40, 60, 80, 100]);
    expect(linearTicks(-7, 3).labels).toEqual(['-8', '-6', '-4', '-2', '0', '2', '4']);
  });

  it('pads a zero-width range instead of dividing by zero', () => {
    const t = linearTicks(5, 5);
    expect(t.min).toBeLessThan(5);
    expect(t.max).toBeGreaterThan(5);
    expect(t.values).toEqual([4.4, 4.6, 4.8, 5, 5.2, 5.4, 5.6]);
    expect(linearTicks(0, 0).values).toEqual([-1, -0.5, 0, 0.5, 1]);
  });

  it('abbreviates large values with k/M/G', () => {
    expect(linearTicks(0, 2e6).labels).toEqual(['0', '0.5M', '1.0M', '1.5M', '2.0M']);
    expect(linearTicks(0, 48_000).labels).toEqual(['0', '10k', '20k', '30k', '40k', '50k']);
    // Tiny steps on a large offset stay unscaled, or the labels would need 7 decimals.
    expect(linearTicks(1_000_000.1, 1_000_000.5).labels[0]).toBe('1000000.1');
  });

  it('rejects ranges it cannot draw', () => {
    expect(() => linearTicks(Number.NaN, 1)).toThrow(RangeError);
    expect(() => linearTicks(0, Number.POSITIVE_INFINITY)).toThrow(RangeError);
    expect(() => linearTicks(2, 1)).toThrow(RangeError);
    expect(() => linearTicks(-Number.MAX_VALUE, Number.MAX_VALUE)).toThrow(RangeError);
  });

  it('covers any range with evenly spaced nice ticks and distinct labels', () => {
    fc.assert(
      fc.property(
        fc.double({ min: -1e6, max: 1e6, noNaN: true }),
        fc.double({ min: 1e-3, max: 1e6, noNaN: true }),
        (lo, span) => {
          const hi = lo + span;
          const t = linearTicks(lo, hi);
          const step = t.values[1]! - t.values[0]!;
          // Ticks are doubles: near 5e5 their difference is only good to ~1e-10 absolute, which
          // for a 2e-4 step is 5e-7 relative. Allow that, and 10 as the mantissa 1 seen from below.
          const tol = 1e-6 + (1e-9 * Math.max(1, Math.abs(lo), Math.abs(hi))) / step;
          const mantissa = step / 10 ** Math.floor(Math.log10(step));
          expect([1, 2, 5, 10].some((m) => Math.abs(mantissa - m) < 10 * tol)).toBe(true);
          // Within rounding noise: a value 1e-9 steps past a tick is drawn on that tick.
          expect(t.min).toBeLessThanOrEqual(lo + step * 1e-6);
          expect(t.max).toBeGreaterThanOrEqual(hi - step * 1e-6);
          // Snapping outward adds less than one step on each side.
          expect(lo - t.min).toBeLessThan(step * (1 + 1e-6));
          expect(t.max - hi).toBeLessThan(step * (1 + 1e-6));
          expect(t.values.length).toBeGreaterThanOrEqual(3);
          expect(t.values.length).toBeLessThanOrEqual(12);
          for (let i = 1; i < t.values.length; i++)
            expect(Math.abs(t.values[i]! - t.values[i - 1]! - step)).toBeLessThan(step * tol);
          expect(new Set(t.labels).size).toBe(t.labels.length);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('logTicks', () => {
  it('uses 1-2-5 within three decades', () => {
    expect(logTicks(1, 64).values).toEqual([1, 2, 5, 10, 20, 50, 100]);
    expect(logTicks(0.013, 0.4).labels).toEqual(['0.01', '0.02', '0.05', '0.1', '0.2', '0.5']);
  });

  it('uses powers of ten for wide spans, thinned to about eight', () => {
    expect(logTicks(1, 1e6).values).toEqual([1, 10, 100, 1e3, 1e4, 1e5, 1e6]);
    const wide = logTicks(1e-3, 1e9);
    expect(wide.values).toEqual([1e-4, 1e-2, 1, 100, 1e4, 1e6, 1e8, 1e10]);
    expect(wide.labels).toEqual(['0.0001', '0.01', '1', '100', '10k', '1M', '100M', '10G']);
  });

  it('uses every integer mantissa within one decade and pads a single value', () => {
    expect(logTicks(3, 4).values).toEqual([3, 4]);
    expect(logTicks(8, 8).values).toEqual([4, 5, 6, 7, 8, 9, 10, 20]);
  });

  it('rejects non-positive values', () => {
    expect(() => logTicks(0, 10)).toThrow(/positive/);
  });
});

describe('formatCompact', () => {
  it('keeps four significant digits and abbreviates large values', () => {
    expect(formatCompact(0)).toBe('0');
    expect(formatCompact(1.23456)).toBe('1.235');
    expect(formatCompact(2048)).toBe('2048');
    expect(formatCompact(51_200)).toBe('51.2k');
    expect(formatCompact(-1_234_567)).toBe('-1.235M');
  });
});
