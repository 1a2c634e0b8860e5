// The binary frame every protocol message travels in: an 8-byte prefix (magic, header length), a
// msgpack header, then raw tensor sections, each starting at an 8-byte aligned offset so that a
// received frame can be read through typed-array views without copying.
//
//   0      u32 LE  magic 'KMOE'
//   4      u32 LE  header length h
//   8      h bytes msgpack map; its `sections` field lists the byte length of each section
//   align8 section 0, zero-padded to a multiple of 8, then section 1, ...
//
// The total length must be exactly what the header implies; anything else is rejected.

import { Packr, Unpackr } from 'msgpackr';
import { ProtocolError } from './errors.js';

/** 'KMOE' read as a little-endian u32. */
export const FRAME_MAGIC = 0x454f4d4b;
export const FRAME_PREFIX_BYTES = 8;
export const FRAME_ALIGN = 8;
/** Headers are a few dozen bytes; a bigger one is an attack or a bug, not a message. */
export const MAX_HEADER_BYTES = 64 * 1024;

// Typed-array views read the platform's byte order; the wire is little-endian.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('kmoe protocol frames are little-endian; this platform is big-endian');
}

// Plain msgpack maps (no msgpackr record extension): any msgpack decoder can read a header.
const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

function align8(n: number): number {
  return Math.ceil(n / FRAME_ALIGN) * FRAME_ALIGN;
}

export interface FrameLayout {
  readonly header: Uint8Array;
  /** Byte offset of each section in the frame. */
  readonly offsets: readonly number[];
  readonly total: number;
}

/** Where everything goes in a frame with this header (which gets a `sections` field) and sections. */
export function frameLayout(header: Record<string, unknown>, sectionBytes: readonly number[]): FrameLayout {
  // msgpackr reuses its output buffer between calls: copy the bytes before the next pack(). Every
  // dispatch and reply builds one of these, so the plain forms: msgpackr packed the object an
  // object spread made several times slower, and Uint8Array.from copies through an iterator.
  const encoded = new Uint8Array(packr.pack(Object.assign({}, header, { sections: sectionBytes })));
  let at = align8(FRAME_PREFIX_BYTES + encoded.byteLength);
  const offsets: number[] = [];
  for (const n of sectionBytes) {
    offsets.push(at);
    at += align8(n);
  }
  return { header: encoded, offsets, total: at };
}

/**
 * The total bytes of a frame with this header and sections, as frameLayout(...).total, without
 * packing the header each time: accounting sizes several hypothetical frames per MoE layer. The
 * header's msgpack length depends only on its keys, its strings and how many bytes each
 * non-negative integer takes, so lengths are cached under that key.
 */
export function frameTotal(header: Record<string, unknown>, sectionBytes: readonly number[]): number {
  const key = sizeKey(header, sectionBytes);
  let headerBytes = key === undefined ? undefined : headerBytesByKey.get(key);
  if (headerBytes === undefined) {
    headerBytes = frameLayout(header, sectionBytes).header.byteLength;
    if (key !== undefined && headerBytesByKey.size < MAX_SIZE_KEYS) headerBytesByKey.set(key, headerBytes);
  }
  let total = align8(FRAME_PREFIX_BYTES + headerBytes);
  for (const n of sectionBytes) total += align8(n);
  return total;
}

/** Distinct header shapes are few (message types x integer widths); the bound only guards memory. */
const MAX_SIZE_KEYS = 4096;
const headerBytesByKey = new Map<string, number>();

/** Bytes msgpack spends on a non-negative integer (positive fixint, uint 8/16/32/64). */
function uintWidth(n: number): number {
  return n < 128 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : n < 2 ** 32 ? 5 : 9;
}

/** The header's size class, or undefined when it holds anything but strings and small non-negative integers. */
function sizeKey(header: Record<string, unknown>, sectionBytes: readonly number[]): string | undefined {
  let key = '';
  for (const k in header) {
    const v = header[k];
    if (typeof v === 'string') key += `${k}=${v.length}:${v};`;
    else if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) key += `${k}#${uintWidth(v)};`;
    else return undefined;
  }
  key += '|';
  for (const n of sectionBytes) {
    if (!Number.isSafeInteger(n) || n < 0) return undefined;
    key += uintWidth(n);
  }
  return key;
}

export interface EncodedFrame {
  /** The whole frame (in its own ArrayBuffer with the default allocator, so it can be transferred). */
  readonly bytes: Uint8Array;
  /** Zero-filled sections to write tensors into, views of `bytes`. */
  readonly sections: Uint8Array[];
}

/** Gives `n` zero-filled bytes starting 8-byte aligned, e.g. from a buffer reused between frames. */
export type FrameAllocator = (n: number) => Uint8Array;

const freshBytes: FrameAllocator = (n) => new Uint8Array(n);

/** Allocates a frame and writes its prefix and header; the caller fills the sections. */
export function allocFrame(
  header: Record<string, unknown>,
  sectionBytes: readonly number[],
  alloc: FrameAllocator = freshBytes,
): EncodedFrame {
  const layout = frameLayout(header, sectionBytes);
  const bytes = alloc(layout.total);
  if (bytes.byteLength !== layout.total || bytes.byteOffset % FRAME_ALIGN !== 0)
    throw new RangeError(`frame allocator gave ${bytes.byteLength} bytes at offset ${bytes.byteOffset}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view.setUint32(0, FRAME_MAGIC, true);
  view.setUint32(4, layout.header.byteLength, true);
  bytes.set(layout.header, FRAME_PREFIX_BYTES);
  const sections = layout.offsets.map((at, i) => bytes.subarray(at, at + sectionBytes[i]!));
  return { bytes, sections };
}

/** One frame's bytes from what a WebSocket library delivers (a buffer, or its fragments). */
export function frameBytes(data: Uint8Array | ArrayBuffer | readonly Uint8Array[]): Uint8Array {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (!Array.isArray(data)) return data as Uint8Array;
  const parts = data as readonly Uint8Array[];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

export interface DecodedFrame {
  /** The header map without its `sections` field. */
  readonly header: Record<string, unknown>;
  /** Each section as bytes, viewing the received buffer. */
  readonly sections: Uint8Array[];
}

/** Splits a received frame into header and sections, checking every length against the others. */
export function decodeFrame(input: Uint8Array, maxFrameBytes: number): DecodedFrame {
  // A plain Uint8Array over the same memory: Buffer#slice would return a view, not a copy.
  const bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  if (bytes.byteLength > maxFrameBytes) {
    throw new ProtocolError(
      'oversize',
      `frame of ${bytes.byteLength} bytes exceeds the limit of ${maxFrameBytes} bytes`,
      { hint: 'send fewer tokens per message, or raise the receiver limit (kmoe worker --max-frame-mb)' },
    );
  }
  if (bytes.byteLength < FRAME_PREFIX_BYTES)
    throw new ProtocolError('bad-frame', `frame of ${bytes.byteLength} bytes is shorter than its prefix`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, true);
  if (magic !== FRAME_MAGIC) {
    throw new ProtocolError(
      'bad-frame',
      `bad magic 0x${magic.toString(16).padStart(8, '0')} (expected 0x${FRAME_MAGIC.toString(16)}): not a kmoe frame`,
    );
  }
  const headerBytes = view.getUint32(4, true);
  if (headerBytes > MAX_HEADER_BYTES || FRAME_PREFIX_BYTES + headerBytes > bytes.byteLength) {
    throw new ProtocolError(
      'bad-frame',
      `header length ${headerBytes} does not fit in a frame of ${bytes.byteLength} bytes (limit ${MAX_HEADER_BYTES})`,
    );
  }
  let decoded: unknown;
  try {
    decoded = unpackr.unpack(bytes.subarray(FRAME_PREFIX_BYTES, FRAME_PREFIX_BYTES + headerBytes));
  } catch (err) {
    throw new ProtocolError('bad-header', `header is not valid msgpack: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (typeof decoded !== 'object' || decoded === null || Array.isArray(decoded) || decoded instanceof Map) {
    throw new ProtocolError('bad-header', `header is ${describe(decoded)}, expected a msgpack map`);
  }
  const { sections: lengths, ...header } = decoded as Record<string, unknown>;
  if (
    !Array.isArray(lengths) ||
    !lengths.every((n): n is number => Number.isSafeInteger(n) && (n as number) >= 0)
  ) {
    throw new ProtocolError('bad-header', 'header field "sections" must be a list of byte lengths');
  }
  let at = align8(FRAME_PREFIX_BYTES + headerBytes);
  const sections: Uint8Array[] = [];
  for (const n of lengths) {
    if (at + n > bytes.byteLength) break;
    sections.push(bytes.subarray(at, at + n));
    at += align8(n);
  }
  if (sections.length !== lengths.length || at !== bytes.byteLength) {
    const expected = lengths.reduce((sum, n) => sum + align8(n), align8(FRAME_PREFIX_BYTES + headerBytes));
    throw new ProtocolError(
      'bad-section',
      `frame is ${bytes.byteLength} bytes but its header and sections [${lengths.join(', ')}] need ${expected}`,
    );
  }
  return { header, sections };
}

type TypedArrayCtor<T> = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): T;
  readonly BYTES_PER_ELEMENT: number;
};

/**
 * A typed view of a section. Sections are 8-byte aligned within the frame, so this is a view
 * whenever the frame itself starts aligned; otherwise (a frame sliced out of a socket buffer at
 * an odd offset) the section is copied, which typed arrays require.
 */
export function sectionView<T>(Ctor: TypedArrayCtor<T>, section: Uint8Array, what: string): T {
  const size = Ctor.BYTES_PER_ELEMENT;
  if (section.byteLength % size !== 0)
    throw new ProtocolError(
      'bad-section',
      `${what}: ${section.byteLength} bytes is not a whole number of ${size}-byte elements`,
    );
  if (section.byteOffset % size === 0)
    return new Ctor(section.buffer, section.byteOffset, section.byteLength / size);
  return new Ctor(section.slice().buffer, 0, section.byteLength / size);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Map) return 'a map with non-string keys';
  return `a ${typeof value}`;
}
