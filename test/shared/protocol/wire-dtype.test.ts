// firstNonFinite and normOverflows against plain references: they guard every section crossing the
// network and every combined row, and take a branch-free pass first, so a special value anywhere
// (any position, either half of a 32-bit word, a misaligned or odd-length section) must be found.

import { describe, expect, it } from 'vitest';
import { bf16ToF32, f16ToF32 } from '../../../shared/dtype.js';
import { normOverflows } from '../../../shared/model/norm-overflow.js';
import { firstNonFinite, WIRE_DTYPES, type WireDType } from '../../../shared/protocol/wire-dtype.js';
import { seededUint32 } from '../../helpers/seeded-random.js';

const generator = seededUint32;

/** Raw bit patterns of specials and of the largest finite values, per dtype. */
const SPECIAL: Record<WireDType, readonly number[]> = {
  fp32: [0x7f800000, 0xff800000, 0x7fc00000, 0xffffffff, 0x7f800001],
  bf16: [0x7f80, 0xff80, 0x7fc0, 0xffff, 0x7f81],
  fp16: [0x7c00, 0xfc00, 0x7e00, 0xffff, 0x7c01],
};
const LARGEST_FINITE: Record<WireDType, readonly number[]> = {
  fp32: [0x7f7fffff, 0xff7fffff],
  bf16: [0x7f7f, 0xff7f],
  fp16: [0x7bff, 0xfbff],
};

/** A section of `n` random finite values at element offset `skip` inside a larger buffer. */
function section(wire: WireDType, n: number, skip: number, next: () => number): Float32Array | Uint16Array {
  if (wire === 'fp32') {
    const all = new Float32Array(n + skip);
    for (let i = 0; i < all.length; i++) all[i] = (next() / 2 ** 32 - 0.5) * 2 ** ((next() % 60) - 30);
    return all.subarray(skip);
  }
  const all = new Uint16Array(n + skip);
  const exponentMask = wire === 'bf16' ? 0x7f80 : 0x7c00;
  for (let i = 0; i < all.length; i++) {
    const bits = next() & 0xffff;
    // Clear one exponent bit if all are set: a random finite value.
    all[i] = (bits & exponentMask) === exponentMask ? bits & ~(exponentMask & -exponentMask) : bits;
  }
  return all.subarray(skip);
}

function setBits(values: Float32Array | Uint16Array, wire: WireDType, i: number, bits: number): void {
  if (wire === 'fp32') new Uint32Array(values.buffer, values.byteOffset, values.length)[i] = bits;
  else values[i] = bits;
}

/** The reference: widen every value and ask Number.isFinite. */
function reference(values: Float32Array | Uint16Array, wire: WireDType): number {
  const wide =
    wire === 'fp32'
      ? (values as Float32Array)
      : wire === 'bf16'
        ? bf16ToF32(values as Uint16Array, new Float32Array(values.length))
        : f16ToF32(values as Uint16Array, new Float32Array(values.length));
  return wide.findIndex((x) => !Number.isFinite(x));
}

describe('firstNonFinite', () => {
  for (const wire of WIRE_DTYPES)
    it(`${wire}: finds the first NaN or infinity wherever it is, and passes the largest finite values`, () => {
      const next = generator(wire.length * 7919);
      let found = 0;
      for (let c = 0; c < 3000; c++) {
        const n = next() % 70;
        const values = section(wire, n, next() % 3, next);
        const kind = next() % 4;
        if (n > 0 && kind >= 1) {
          const specials = kind === 3 ? LARGEST_FINITE[wire] : SPECIAL[wire];
          for (let k = 0; k < 1 + (next() % 2); k++)
            setBits(values, wire, next() % n, specials[next() % specials.length]!);
        }
        const expected = reference(values, wire);
        expect(firstNonFinite(values, wire), `case ${c}, ${n} values`).toBe(expected);
        if (expected >= 0) found++;
      }
      expect(found).toBeGreaterThan(1000);
    });

  it('an empty section is finite', () => {
    for (const wire of WIRE_DTYPES)
      expect(firstNonFinite(wire === 'fp32' ? new Float32Array(0) : new Uint16Array(0), wire)).toBe(-1);
  });
});

describe('normOverflows', () => {
  /** The reference: one sum of squares, in order. */
  const overflows = (row: Float32Array) => !(row.reduce((s, x) => s + x * x, 0) < 3.4028234663852886e38);

  it('agrees with one sum of squares, at every length and with specials anywhere', () => {
    const next = generator(101);
    let yes = 0;
    for (let c = 0; c < 2000; c++) {
      const row = new Float32Array(next() % 40);
      // Magnitudes around the threshold: sqrt(3.4e38 / n) is 1e18-1e19 for these lengths.
      for (let i = 0; i < row.length; i++) row[i] = (next() % 2 ? 1 : -1) * 10 ** (15 + (next() % 50) / 10);
      if (row.length > 0 && next() % 4 === 0)
        row[next() % row.length] = [Number.NaN, Infinity, -Infinity][next() % 3]!;
      const expected = overflows(row);
      expect(normOverflows(row), `case ${c}`).toBe(expected);
      if (expected) yes++;
    }
    expect(yes).toBeGreaterThan(300);
    expect(yes).toBeLessThan(1900);
  });
});
