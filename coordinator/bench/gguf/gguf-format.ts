// GGUF v3, the file format of llama.cpp: a header, typed metadata key/values, a table of tensor
// descriptors (name, dims innermost-first, ggml type, offset) and the aligned tensor data.
// Only the subset kmoe writes and reads back (in the tests and for the bench's checks):
// every metadata value type, and tensors of type F32, F16, BF16 and Q8_0.

import { open } from 'node:fs/promises';
import { GgufError } from './errors.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** gguf_type: the type tag of a metadata value. */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufValueType = (typeof GgufValueType)[keyof typeof GgufValueType];

/** The ggml tensor types this module knows (ggml.h `enum ggml_type`). */
export const GgmlType = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
export type GgmlType = (typeof GgmlType)[keyof typeof GgmlType];
export type GgmlTypeName = keyof typeof GgmlType;

/** Block size (elements) and bytes per block of each type. */
const TYPE_LAYOUT: Record<GgmlType, { block: number; bytes: number }> = {
  [GgmlType.F32]: { block: 1, bytes: 4 },
  [GgmlType.F16]: { block: 1, bytes: 2 },
  [GgmlType.BF16]: { block: 1, bytes: 2 },
  [GgmlType.Q8_0]: { block: 32, bytes: 34 },
};

export function ggmlTypeName(t: number): string {
  return (Object.entries(GgmlType).find(([, v]) => v === t)?.[0] ?? `type ${t}`) as string;
}

/** Bytes of a tensor of `elements` elements (the innermost dim must be a multiple of the block). */
export function ggmlByteLength(type: GgmlType, dims: readonly number[]): number {
  const layout = TYPE_LAYOUT[type];
  if (layout === undefined) throw new GgufError(`unsupported ggml type ${type}`);
  const inner = dims[0] ?? 1;
  if (inner % layout.block !== 0) {
    throw new GgufError(
      `a ${ggmlTypeName(type)} tensor needs its innermost dimension to be a multiple of ${layout.block}, got ${inner}`,
    );
  }
  const elements = dims.reduce((a, d) => a * d, 1);
  return (elements / layout.block) * layout.bytes;
}

/** A metadata value with its type, so that writing it back is exact. */
export type GgufValue =
  | {
      readonly type:
        | typeof GgufValueType.UINT8
        | typeof GgufValueType.INT8
        | typeof GgufValueType.UINT16
        | typeof GgufValueType.INT16
        | typeof GgufValueType.UINT32
        | typeof GgufValueType.INT32
        | typeof GgufValueType.FLOAT32
        | typeof GgufValueType.FLOAT64;
      readonly value: number;
    }
  | { readonly type: typeof GgufValueType.UINT64 | typeof GgufValueType.INT64; readonly value: bigint }
  | { readonly type: typeof GgufValueType.BOOL; readonly value: boolean }
  | { readonly type: typeof GgufValueType.STRING; readonly value: string }
  | {
      readonly type: typeof GgufValueType.ARRAY;
      readonly itemType: Exclude<GgufValueType, typeof GgufValueType.ARRAY>;
      readonly value: readonly (number | bigint | boolean | string)[];
    };

export const gguf = {
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  strings: (value: readonly string[]): GgufValue => ({
    type: GgufValueType.ARRAY,
    itemType: GgufValueType.STRING,
    value,
  }),
  f32s: (value: readonly number[]): GgufValue => ({
    type: GgufValueType.ARRAY,
    itemType: GgufValueType.FLOAT32,
    value,
  }),
  i32s: (value: readonly number[]): GgufValue => ({
    type: GgufValueType.ARRAY,
    itemType: GgufValueType.INT32,
    value,
  }),
};

export interface GgufTensorInfo {
  readonly name: string;
  /** ggml order: dims[0] is the innermost (contiguous) dimension, the reverse of a row-major shape. */
  readonly dims: readonly number[];
  readonly type: GgmlType;
  /** Offset of the data from the start of the data section. */
  readonly offset: number;
  readonly byteLength: number;
}

export interface GgufHeader {
  readonly version: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly tensors: readonly GgufTensorInfo[];
  readonly alignment: number;
  /** Absolute file offset of the data section. */
  readonly dataOffset: number;
}

// ---- reading ---------------------------------------------------------------------------------

class Cursor {
  #pos = 0;
  readonly #view: DataView;
  readonly #bytes: Uint8Array;
  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get pos(): number {
    return this.#pos;
  }
  #need(n: number): number {
    if (this.#pos + n > this.#bytes.byteLength) throw new RangeError('header extends past the bytes read');
    const at = this.#pos;
    this.#pos += n;
    return at;
  }
  u8 = () => this.#view.getUint8(this.#need(1));
  i8 = () => this.#view.getInt8(this.#need(1));
  u16 = () => this.#view.getUint16(this.#need(2), true);
  i16 = () => this.#view.getInt16(this.#need(2), true);
  u32 = () => this.#view.getUint32(this.#need(4), true);
  i32 = () => this.#view.getInt32(this.#need(4), true);
  f32 = () => this.#view.getFloat32(this.#need(4), true);
  f64 = () => this.#view.getFloat64(this.#need(8), true);
  u64 = () => this.#view.getBigUint64(this.#need(8), true);
  i64 = () => this.#view.getBigInt64(this.#need(8), true);
  size = (): number => {
    const v = this.u64();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufError(`size ${v} too large`);
    return Number(v);
  };
  str = (): string => {
    const n = this.size();
    const at = this.#need(n);
    return new TextDecoder('utf-8', { fatal: true }).decode(this.#bytes.subarray(at, at + n));
  };
}

function readScalar(c: Cursor, type: number): number | bigint | boolean | string {
  switch (type) {
    case GgufValueType.UINT8:
      return c.u8();
    case GgufValueType.INT8:
      return c.i8();
    case GgufValueType.UINT16:
      return c.u16();
    case GgufValueType.INT16:
      return c.i16();
    case GgufValueType.UINT32:
      return c.u32();
    case GgufValueType.INT32:
      return c.i32();
    case GgufValueType.FLOAT32:
      return c.f32();
    case GgufValueType.FLOAT64:
      return c.f64();
    case GgufValueType.UINT64:
      return c.u64();
    case GgufValueType.INT64:
      return c.i64();
    case GgufValueType.BOOL:
      return c.u8() !== 0;
    case GgufValueType.STRING:
      return c.str();
    default:
      throw new GgufError(`unknown metadata value type ${type}`);
  }
}

function readValue(c: Cursor): GgufValue {
  const type = c.u32();
  if (type === GgufValueType.ARRAY) {
    const itemType = c.u32();
    if (itemType === GgufValueType.ARRAY) throw new GgufError('nested metadata arrays are not supported');
    const n = c.size();
    const value: (number | bigint | boolean | string)[] = new Array(n);
    for (let i = 0; i < n; i++) value[i] = readScalar(c, itemType);
    return { type, itemType: itemType as Exclude<GgufValueType, 9>, value };
  }
  return { type, value: readScalar(c, type) } as GgufValue;
}

/** Parses the header of a GGUF file from its first bytes (reading more until it fits). */
export async function readGgufHeader(file: string): Promise<GgufHeader> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    for (let want = Math.min(size, 1 << 20); ; want = Math.min(size, want * 4)) {
      const buf = new Uint8Array(want);
      await fh.read(buf, 0, want, 0);
      try {
        return parseGgufHeader(buf, file);
      } catch (e) {
        if (!(e instanceof RangeError) || want === size) {
          if (e instanceof RangeError) throw new GgufError(`${file}: truncated GGUF header`);
          throw e;
        }
      }
    }
  } finally {
    await fh.close();
  }
}

export function parseGgufHeader(bytes: Uint8Array, source = 'GGUF'): GgufHeader {
  const c = new Cursor(bytes);
  if (c.u32() !== GGUF_MAGIC) throw new GgufError(`${source}: not a GGUF file (bad magic)`);
  const version = c.u32();
  if (version !== 2 && version !== 3) throw new GgufError(`${source}: GGUF version ${version} not supported`);
  const tensorCount = c.size();
  const kvCount = c.size();
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.str();
    metadata.set(key, readValue(c));
  }
  const alignmentValue = metadata.get('general.alignment');
  const alignment =
    alignmentValue !== undefined && typeof alignmentValue.value === 'number'
      ? alignmentValue.value
      : GGUF_DEFAULT_ALIGNMENT;
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = c.str();
    const nDims = c.u32();
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.size());
    const type = c.u32() as GgmlType;
    const offset = c.size();
    tensors.push({ name, dims, type, offset, byteLength: ggmlByteLength(type, dims) });
  }
  return { version, metadata, tensors, alignment, dataOffset: alignUp(c.pos, alignment) };
}

/** The raw bytes of one tensor of a GGUF file. */
export async function readGgufTensorBytes(
  file: string,
  header: GgufHeader,
  tensor: GgufTensorInfo,
): Promise<Uint8Array> {
  const fh = await open(file, 'r');
  try {
    const buf = new Uint8Array(tensor.byteLength);
    const { bytesRead } = await fh.read(buf, 0, buf.byteLength, header.dataOffset + tensor.offset);
    if (bytesRead !== buf.byteLength) throw new GgufError(`${file}: tensor ${tensor.name} is truncated`);
    return buf;
  } finally {
    await fh.close();
  }
}

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

// ---- writing ---------------------------------------------------------------------------------

/** A tensor to write: its descriptor and a producer of its bytes, in order, in one or more chunks. */
export interface GgufTensorSource {
  readonly name: string;
  readonly dims: readonly number[];
  readonly type: GgmlType;
  readonly data: () => AsyncIterable<Uint8Array>;
}

class Sink {
  readonly #parts: Uint8Array[] = [];
  #length = 0;
  get length(): number {
    return this.#length;
  }
  #push(bytes: Uint8Array): void {
    this.#parts.push(bytes);
    this.#length += bytes.byteLength;
  }
  #num(n: number, write: (v: DataView) => void): void {
    const b = new Uint8Array(n);
    write(new DataView(b.buffer));
    this.#push(b);
  }
  u8 = (v: number) => this.#num(1, (d) => d.setUint8(0, v));
  i8 = (v: number) => this.#num(1, (d) => d.setInt8(0, v));
  u16 = (v: number) => this.#num(2, (d) => d.setUint16(0, v, true));
  i16 = (v: number) => this.#num(2, (d) => d.setInt16(0, v, true));
  u32 = (v: number) => this.#num(4, (d) => d.setUint32(0, v, true));
  i32 = (v: number) => this.#num(4, (d) => d.setInt32(0, v, true));
  f32 = (v: number) => this.#num(4, (d) => d.setFloat32(0, v, true));
  f64 = (v: number) => this.#num(8, (d) => d.setFloat64(0, v, true));
  u64 = (v: bigint | number) => this.#num(8, (d) => d.setBigUint64(0, BigInt(v), true));
  i64 = (v: bigint) => this.#num(8, (d) => d.setBigInt64(0, v, true));
  str = (s: string) => {
    const bytes = new TextEncoder().encode(s);
    this.u64(bytes.byteLength);
    this.#push(bytes);
  };
  pad = (alignment: number) => {
    const n = alignUp(this.#length, alignment) - this.#length;
    if (n > 0) this.#push(new Uint8Array(n));
  };
  bytes(): Uint8Array {
    return Buffer.concat(this.#parts);
  }
}

function writeScalar(s: Sink, type: number, v: number | bigint | boolean | string): void {
  switch (type) {
    case GgufValueType.UINT8:
      s.u8(v as number);
      return;
    case GgufValueType.INT8:
      s.i8(v as number);
      return;
    case GgufValueType.UINT16:
      s.u16(v as number);
      return;
    case GgufValueType.INT16:
      s.i16(v as number);
      return;
    case GgufValueType.UINT32:
      s.u32(v as number);
      return;
    case GgufValueType.INT32:
      s.i32(v as number);
      return;
    case GgufValueType.FLOAT32:
      s.f32(v as number);
      return;
    case GgufValueType.FLOAT64:
      s.f64(v as number);
      return;
    case GgufValueType.UINT64:
      s.u64(v as bigint);
      return;
    case GgufValueType.INT64:
      s.i64(v as bigint);
      return;
    case GgufValueType.BOOL:
      s.u8(v ? 1 : 0);
      return;
    case GgufValueType.STRING:
      s.str(v as string);
      return;
    default:
      throw new GgufError(`unknown metadata value type ${type}`);
  }
}

/**
 * Writes a GGUF v3 file: metadata in insertion order, tensors in the given order, each tensor's data
 * aligned to `general.alignment` (32 unless the metadata says otherwise). Data is streamed: only one
 * chunk of one tensor is in memory at a time. Returns the number of bytes written.
 */
export async function writeGguf(
  file: string,
  metadata: ReadonlyMap<string, GgufValue>,
  tensors: readonly GgufTensorSource[],
): Promise<number> {
  const alignmentValue = metadata.get('general.alignment');
  const alignment = typeof alignmentValue?.value === 'number' ? alignmentValue.value : GGUF_DEFAULT_ALIGNMENT;
  const head = new Sink();
  head.u32(GGUF_MAGIC);
  head.u32(GGUF_VERSION);
  head.u64(tensors.length);
  head.u64(metadata.size);
  for (const [key, v] of metadata) {
    head.str(key);
    head.u32(v.type);
    if (v.type === GgufValueType.ARRAY) {
      head.u32(v.itemType);
      head.u64(v.value.length);
      for (const item of v.value) writeScalar(head, v.itemType, item);
    } else {
      writeScalar(head, v.type, v.value);
    }
  }
  const sizes = tensors.map((t) => ggmlByteLength(t.type, t.dims));
  let offset = 0;
  tensors.forEach((t, i) => {
    head.str(t.name);
    head.u32(t.dims.length);
    for (const d of t.dims) head.u64(d);
    head.u32(t.type);
    head.u64(offset);
    offset = alignUp(offset + sizes[i]!, alignment);
  });
  head.pad(alignment);

  const fh = await open(file, 'w');
  try {
    let pos = 0;
    const write = async (bytes: Uint8Array) => {
      await fh.write(bytes, 0, bytes.byteLength, pos);
      pos += bytes.byteLength;
    };
    await write(head.bytes());
    const dataStart = pos;
    for (const [i, t] of tensors.entries()) {
      const start = pos;
      for await (const chunk of t.data()) await write(chunk);
      if (pos - start !== sizes[i]) {
        throw new GgufError(
          `tensor ${t.name}: produced ${pos - start} bytes, its descriptor says ${sizes[i]}`,
        );
      }
      const padded = dataStart + alignUp(pos - dataStart, alignment);
      if (padded > pos) await write(new Uint8Array(padded - pos));
    }
    return pos;
  } finally {
    await fh.close();
  }
}
