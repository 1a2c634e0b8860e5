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
 * Index of the first NaN or infinity in a wire section, or -1. Reads exponent bits, so the 16-bit
 * formats need no widening: all-ones exponent means not finite in fp32, bf16 and fp16 alike.
 */
export function firstNonFinite(values: WireArray, wire: WireDType): number {
  if (wire === 'fp32') {
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    for (let i = 0; i < bits.length; i++) if ((bits[i]! & 0x7f800000) === 0x7f800000) return i;
    return -1;
  }
  const mask = wire === 'bf16' ? 0x7f80 : 0x7c00;
  for (let i = 0; i < values.length; i++) if ((values[i]! & mask) === mask) return i;
  return -1;
}
