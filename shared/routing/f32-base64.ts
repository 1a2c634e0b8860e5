// The one encoding of the float tables routing profiles carry (expert means, linear substitutes):
// little-endian float32, base64. Decoding is strict (the base64 alphabet only, no whitespace: Node's
// decoder would silently skip stray characters) and checks finiteness; results are memoised by
// their text, because one profile is resolved and validated several times (schema, model check,
// policy, the server's catalog and the engine) and a substitute table is megabytes.

import { endianness } from 'node:os';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const LITTLE_ENDIAN = endianness() === 'LE';
/** Decoded tables kept, most recently used last. */
const MEMO_SIZE = 8;
const memo = new Map<string, Float32Array>();

export function encodeF32Base64(data: Float32Array): string {
  const bytes = Buffer.alloc(data.length * 4);
  for (let i = 0; i < data.length; i++) bytes.writeFloatLE(data[i]!, i * 4);
  return bytes.toString('base64');
}

/**
 * Decodes `count` float32 values named `name` in messages; returns a problem string instead of
 * throwing. The returned array is shared with later decodes of the same text: do not modify it.
 */
export function decodeF32Base64(name: string, text: string, count: number): Float32Array | string {
  const known = memo.get(text);
  if (known && known.length === count) {
    memo.delete(text);
    memo.set(text, known);
    return known;
  }
  if (text.length % 4 !== 0 || !BASE64.test(text))
    return `${name} is not base64 (A-Z a-z 0-9 + / and = padding only)`;
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length !== count * 4) return `${name} holds ${bytes.length} bytes; its shape needs ${count * 4}`;
  const data = new Float32Array(count);
  if (LITTLE_ENDIAN) new Uint8Array(data.buffer).set(bytes);
  else for (let i = 0; i < count; i++) data[i] = bytes.readFloatLE(i * 4);
  for (let i = 0; i < count; i++) {
    if (!Number.isFinite(data[i]!)) return `${name} value ${i} is ${data[i]}`;
  }
  memo.set(text, data);
  if (memo.size > MEMO_SIZE) memo.delete(memo.keys().next().value!);
  return data;
}
