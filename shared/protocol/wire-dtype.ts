// Number formats of hidden states on the wire between coordinator and workers. The bit-level
// conversion lives in shared/dtype.ts; this module only maps a wire dtype name to it, so every
// byte that crosses the network is converted by the same code.

import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../dtype.js';

export const WIRE_DTYPES = ['fp32', 'fp16', 'bf16'] as const;
export type WireDType = (typeof WIRE_DTYPES)[number];
/** bf16 keeps fp32's range (no overflow in activations) at half the bytes. */
export const DEFAULT_WIRE_DTYPE: WireDType = 'bf16';

/** A wire section as typed elements: fp32 as Float32Array, the 16-bit formats as raw Uint16Array bits. */
export type WireArray = Float32Array | Uint16Array;

export function isWireDType(value: string): value is WireDType {
  return (WIRE_DTYPES as readonly string[]).includes(value);
}

export function wireElementBytes(dtype: WireDType): number {
  return dtype === 'fp32' ? 4 : 2;
}

/** dst (wire) = src (fp32), rounded to nearest even for the 16-bit formats. */
export function toWire(src: Float32Array, dtype: WireDType, dst: WireArray): void {
  checkArray(dtype, dst);
  if (src.length !== dst.length)
    throw new RangeError(`wire conversion: source has ${src.length} elements, destination ${dst.length}`);
  if (dtype === 'fp32') (dst as Float32Array).set(src);
  else if (dtype === 'bf16') f32ToBf16(src, dst as Uint16Array);
  else f32ToF16(src, dst as Uint16Array);
}

/**
 * The wire values as fp32. An fp32 section is returned as it is (no copy); the 16-bit formats
 * are widened into `dst` (allocated when absent).
 */
export function fromWire(src: WireArray, dtype: WireDType, dst?: Float32Array): Float32Array {
  checkArray(dtype, src);
  if (dtype === 'fp32') {
    if (dst === undefined) return src as Float32Array;
    dst.set(src);
    return dst;
  }
  const out = dst ?? new Float32Array(src.length);
  return dtype === 'bf16' ? bf16ToF32(src as Uint16Array, out) : f16ToF32(src as Uint16Array, out);
}

function checkArray(dtype: WireDType, array: WireArray): void {
  if ((dtype === 'fp32') !== array instanceof Float32Array)
    throw new TypeError(`a ${dtype} wire section cannot be a ${array.constructor.name}`);
}

/**
 * Index of the first NaN or infinity in a wire section, or -1. Every section crossing the network
 * is checked (by the worker on requests and results, by the coordinator on results), so the common
 * all-finite case takes one branch-free pass, faster than a compare per element (2x for fp32,
 * 1.2-1.4x for bf16: docs/expert-parallelism.md); only a section that holds one is searched for its
 * index.
 */
export function firstNonFinite(values: WireArray, wire: WireDType): number {
  if (wire === 'fp32') return allFiniteF32(values as Float32Array) ? -1 : firstExponentAllOnes(values, wire);
  const finite =
    wire === 'bf16'
      ? allFinite16(values as Uint16Array, 7, 0xff)
      : allFinite16(values as Uint16Array, 10, 0x1f);
  return finite ? -1 : firstExponentAllOnes(values, wire);
}

/** x * 0 is 0 for every finite x and NaN for NaN and infinity; four sums keep the adds independent. */
function allFiniteF32(v: Float32Array): boolean {
  let a = 0;
  let b = 0;
  let c = 0;
  let d = 0;
  const n = v.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    a += v[i]! * 0;
    b += v[i + 1]! * 0;
    c += v[i + 2]! * 0;
    d += v[i + 3]! * 0;
  }
  for (; i < n; i++) a += v[i]! * 0;
  return a + b + (c + d) === 0;
}

/**
 * A 16-bit value's exponent field (`mask` wide, at `shift`) plus 1 carries into the bit above the
 * mask only when the field is all ones (not finite), so OR-ing that sum over all values tells whether
 * any is. Read two values per 32-bit word when the section is 4-byte aligned.
 */
function allFinite16(v: Uint16Array, shift: number, mask: number): boolean {
  const carry = mask + 1;
  let any = 0;
  let i = 0;
  if ((v.byteOffset & 3) === 0) {
    const words = new Uint32Array(v.buffer, v.byteOffset, v.length >>> 1);
    for (let w = 0; w < words.length; w++) {
      const x = words[w]!;
      any |= (((x >>> shift) & mask) + 1) | (((x >>> (shift + 16)) & mask) + 1);
    }
    i = words.length * 2;
  }
  for (; i < v.length; i++) any |= ((v[i]! >>> shift) & mask) + 1;
  return (any & carry) === 0;
}

/** Reads exponent bits, so the 16-bit formats need no widening: all ones means not finite in each. */
function firstExponentAllOnes(values: WireArray, wire: WireDType): number {
  if (wire === 'fp32') {
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    for (let i = 0; i < bits.length; i++) if ((bits[i]! & 0x7f800000) === 0x7f800000) return i;
    return -1;
  }
  const mask = wire === 'bf16' ? 0x7f80 : 0x7c00;
  for (let i = 0; i < values.length; i++) if ((values[i]! & mask) === mask) return i;
  return -1;
}
