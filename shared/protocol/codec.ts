// Encoding and decoding of protocol messages on top of frames. Decoding validates everything a
// peer could get wrong (header schema, section sizes against n * hidden * dtype size, CSR offsets,
// expert indices, finite weights) and yields typed views into the received bytes.

import { z } from 'zod';
import { AUTH_HEX } from './auth.js';
import { ProtocolError } from './errors.js';
import {
  allocFrame,
  type DecodedFrame,
  decodeFrame,
  type FrameAllocator,
  frameTotal,
  sectionView,
} from './frame.js';
import {
  type Challenge,
  type DispatchRequest,
  type DispatchResult,
  type Drain,
  type ErrorReply,
  type ExpertIndexArray,
  type ExpertIndexDType,
  expertIndexBytes,
  type Hello,
  type Holdings,
  type Message,
  type Proof,
  REFUSE_REASONS,
  type Refuse,
  type Welcome,
} from './messages.js';
import { WIRE_DTYPES, type WireArray, type WireDType, wireElementBytes } from './wire-dtype.js';
import { MAX_WORKER_URL_CHARS } from './worker-url.js';

/**
 * Largest routing weight a dispatch may carry. Policies give weights in [0, 1] (renormalised, or
 * native top-K for `skip`) times the family's routed scaling factor (1, DeepSeek-V3 2.5,
 * DeepSeek-V2 16); anything above this is an attack or a bug, and a weight of 1e30 turns finite
 * expert outputs into infinities.
 */
export const MAX_PAIR_WEIGHT = 64;

/** What the receiver knows about the model, against which sizes and indices are checked. */
export interface DecodeLimits {
  readonly maxFrameBytes: number;
  readonly hidden: number;
  readonly numExperts: number;
  readonly numLayers: number;
}

/**
 * Longest message of a refusal or an error reply (characters). A longer one is cut where it is
 * encoded, so that what a worker says always decodes: the schema refusing it would leave the
 * coordinator with "invalid refuse header" instead of the reason.
 */
export const MAX_MESSAGE_CHARS = 4096;

const u32 = z.number().int().min(0).max(0xffffffff);
const count = z
  .number()
  .int()
  .min(0)
  .max(2 ** 31 - 1);
const wire = z.enum(WIRE_DTYPES);
const authHex = z.string().regex(AUTH_HEX, 'must be 32 bytes in lower-case hex');

const schemas = {
  hello: z.object({
    type: z.literal('hello'),
    version: u32,
    fingerprint: z.string().max(256),
    client: z.string().max(1024),
    nonce: authHex.optional(),
    url: z.string().max(MAX_WORKER_URL_CHARS).optional(),
  }),
  challenge: z.object({ type: z.literal('challenge'), version: u32, nonce: authHex }),
  proof: z.object({ type: z.literal('proof'), proof: authHex }),
  welcome: z
    .object({
      type: z.literal('welcome'),
      version: u32,
      fingerprint: z.string().max(256),
      worker: z.string().max(1024),
      experts: z.array(count).max(1 << 20),
      numLayers: count,
      numExperts: count,
      hidden: count,
      wire: z.array(wire).min(1),
      maxFrameBytes: z.number().int().positive(),
      proof: authHex.optional(),
      bound: z.literal(true).optional(),
    })
    // Only the proof makes the flag worth anything: without one it is a peer's word.
    .refine((w) => w.bound === undefined || w.proof !== undefined, {
      path: ['bound'],
      message: 'comes with a proof only',
    }),
  refuse: z.object({
    type: z.literal('refuse'),
    version: u32,
    reason: z.enum(REFUSE_REASONS),
    message: z.string().max(MAX_MESSAGE_CHARS),
  }),
  dispatch: z.object({
    type: z.literal('dispatch'),
    id: u32,
    layer: count,
    wire,
    index: z.enum(['uint8', 'int16', 'int32']),
    tokens: count.min(1),
    pairs: count,
  }),
  result: z.object({ type: z.literal('result'), id: u32, wire, tokens: count.min(1) }),
  error: z.object({
    type: z.literal('error'),
    id: u32.nullable(),
    code: z.enum([
      'bad-frame',
      'oversize',
      'bad-header',
      'bad-section',
      'bad-value',
      'unexpected-message',
      'not-held',
      'compute-failed',
    ]),
    message: z.string().max(MAX_MESSAGE_CHARS),
  }),
  drain: z.object({ type: z.literal('drain'), reason: z.string().max(1024) }),
  holdings: z.object({ type: z.literal('holdings'), experts: z.array(count).max(1 << 20) }),
} as const;

type MessageType = keyof typeof schemas;

function parseHeader<T extends MessageType>(
  type: T,
  header: Record<string, unknown>,
): z.infer<(typeof schemas)[T]> {
  const parsed = schemas[type].safeParse(header);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(header)'}: ${i.message}`);
    throw new ProtocolError('bad-header', `invalid ${type} header: ${problems.join('; ')}`);
  }
  return parsed.data as z.infer<(typeof schemas)[T]>;
}

function noSections(frame: DecodedFrame, type: string): void {
  if (frame.sections.length !== 0)
    throw new ProtocolError(
      'bad-section',
      `a ${type} message has no tensor sections, got ${frame.sections.length}`,
    );
}

/**
 * A header's `type` as a peer sent it, for an error message: whatever msgpack decoded (a BigInt or
 * an extension value included, which JSON.stringify would throw on), at most a line of it.
 */
function describeType(type: unknown): string {
  if (typeof type === 'string') return JSON.stringify(type.length > 64 ? `${type.slice(0, 64)}…` : type);
  if (type === null || typeof type === 'number' || typeof type === 'boolean') return String(type);
  // The built-in tag, not constructor.name: a map's `constructor` key is the peer's text.
  return `of type ${typeof type === 'object' ? Object.prototype.toString.call(type).slice(8, -1) : typeof type}`;
}

/** Decodes and validates any message. Throws ProtocolError with a code saying what was wrong. */
export function decodeMessage(bytes: Uint8Array, limits: DecodeLimits): Message {
  const frame = decodeFrame(bytes, limits.maxFrameBytes);
  const type = frame.header['type'];
  switch (type) {
    // Header-only messages: no tensor sections.
    case 'hello':
    case 'challenge':
    case 'proof':
    case 'welcome':
    case 'refuse':
    case 'error':
    case 'drain':
    case 'holdings':
      noSections(frame, type);
      return parseHeader(type, frame.header);
    case 'dispatch':
      return decodeDispatch(frame, limits);
    case 'result':
      return decodeResult(frame, limits);
    default:
      throw new ProtocolError(
        'bad-header',
        `unknown message type ${describeType(type)} (known: ${Object.keys(schemas).join(', ')})`,
      );
  }
}

/** The request id of a frame whose decoding failed, when its header is readable; else null. */
export function requestIdOf(bytes: Uint8Array, maxFrameBytes: number): number | null {
  try {
    const id = decodeFrame(bytes, maxFrameBytes).header['id'];
    return u32.safeParse(id).success ? (id as number) : null;
  } catch {
    return null;
  }
}

function sectionSize(frame: DecodedFrame, index: number, expected: number, what: string): Uint8Array {
  const section = frame.sections[index]!;
  if (section.byteLength !== expected)
    throw new ProtocolError(
      'bad-section',
      `${what} section is ${section.byteLength} bytes, expected ${expected}`,
    );
  return section;
}

function wireSection(dtype: WireDType, section: Uint8Array, what: string): WireArray {
  return dtype === 'fp32'
    ? sectionView(Float32Array, section, what)
    : sectionView(Uint16Array, section, what);
}

function decodeDispatch(frame: DecodedFrame, limits: DecodeLimits): DispatchRequest {
  const h = parseHeader('dispatch', frame.header);
  const { tokens: n, pairs: p } = h;
  if (frame.sections.length !== 4)
    throw new ProtocolError('bad-section', `a dispatch has 4 sections, got ${frame.sections.length}`);
  // Each token takes each expert at most once: more pairs than that cost memory and compute
  // with no meaning (200k pairs of one token once took 2.3 GB and seconds).
  if (p > n * limits.numExperts)
    throw new ProtocolError(
      'bad-value',
      `dispatch ${h.id}: ${p} expert pairs for ${n} tokens, more than ${limits.numExperts} per token`,
    );
  if (h.layer >= limits.numLayers)
    throw new ProtocolError(
      'bad-value',
      `layer ${h.layer} is out of range: the model has ${limits.numLayers}`,
    );
  const hiddenBytes = n * limits.hidden * wireElementBytes(h.wire);
  const what = `dispatch ${h.id}`;
  const hidden = wireSection(
    h.wire,
    sectionSize(frame, 0, hiddenBytes, `${what} hidden [${n}, ${limits.hidden}] ${h.wire}`),
    what,
  );
  const offsets = sectionView(Int32Array, sectionSize(frame, 1, (n + 1) * 4, `${what} offsets`), what);
  const experts = expertView(
    h.index,
    sectionSize(frame, 2, p * expertIndexBytes(h.index), `${what} experts`),
  );
  const weights = sectionView(Float32Array, sectionSize(frame, 3, p * 4, `${what} weights`), what);
  if (offsets[0] !== 0 || offsets[n] !== p)
    throw new ProtocolError(
      'bad-value',
      `${what}: offsets must run from 0 to ${p}, got ${offsets[0]}..${offsets[n]}`,
    );
  for (let t = 0; t < n; t++) {
    if (!(offsets[t + 1]! > offsets[t]!))
      throw new ProtocolError('bad-value', `${what}: token ${t} has no expert pairs (offsets must increase)`);
  }
  // Last pair index that named each expert, to refuse an expert repeated within one token.
  const seen = new Int32Array(limits.numExperts).fill(-1);
  for (let t = 0; t < n; t++) {
    for (let j = offsets[t]!; j < offsets[t + 1]!; j++) {
      const e = experts[j]!;
      if (e < 0 || e >= limits.numExperts)
        throw new ProtocolError(
          'bad-value',
          `${what}: expert index ${e} is out of range: the model has ${limits.numExperts}`,
        );
      if (seen[e]! >= offsets[t]!)
        throw new ProtocolError(
          'bad-value',
          `${what}: token ${t} names expert ${e} twice (pairs ${seen[e]} and ${j}); each expert at most once per token`,
        );
      seen[e] = j;
      const w = weights[j]!;
      if (!(w >= 0 && w <= MAX_PAIR_WEIGHT))
        throw new ProtocolError(
          'bad-value',
          `${what}: weight of pair ${j} is ${w}; routing weights are finite numbers in [0, ${MAX_PAIR_WEIGHT}]`,
        );
    }
  }
  return {
    type: 'dispatch',
    id: h.id,
    layer: h.layer,
    wire: h.wire,
    numTokens: n,
    hidden,
    offsets,
    experts,
    weights,
  };
}

function expertView(dtype: ExpertIndexDType, section: Uint8Array): ExpertIndexArray {
  if (dtype === 'uint8') return section;
  return dtype === 'int16'
    ? sectionView(Int16Array, section, 'experts')
    : sectionView(Int32Array, section, 'experts');
}

function decodeResult(frame: DecodedFrame, limits: DecodeLimits): DispatchResult {
  const h = parseHeader('result', frame.header);
  if (frame.sections.length !== 1)
    throw new ProtocolError('bad-section', `a result has 1 section, got ${frame.sections.length}`);
  const bytes = h.tokens * limits.hidden * wireElementBytes(h.wire);
  const what = `result ${h.id}`;
  const partial = wireSection(
    h.wire,
    sectionSize(frame, 0, bytes, `${what} partial [${h.tokens}, ${limits.hidden}]`),
    what,
  );
  return { type: 'result', id: h.id, wire: h.wire, numTokens: h.tokens, partial };
}

export function encodeHello(m: Omit<Hello, 'type'>): Uint8Array {
  return allocFrame({ type: 'hello', ...m }, []).bytes;
}

export function encodeChallenge(m: Omit<Challenge, 'type'>): Uint8Array {
  return allocFrame({ type: 'challenge', ...m }, []).bytes;
}

export function encodeProof(m: Omit<Proof, 'type'>): Uint8Array {
  return allocFrame({ type: 'proof', ...m }, []).bytes;
}

export function encodeWelcome(m: Omit<Welcome, 'type'>): Uint8Array {
  return allocFrame({ type: 'welcome', ...m }, []).bytes;
}

export function encodeRefuse(m: Omit<Refuse, 'type'>): Uint8Array {
  return allocFrame({ type: 'refuse', ...m, message: cutMessage(m.message) }, []).bytes;
}

export function encodeErrorReply(m: Omit<ErrorReply, 'type'>): Uint8Array {
  return allocFrame({ type: 'error', ...m, message: cutMessage(m.message) }, []).bytes;
}

/** `text` in at most MAX_MESSAGE_CHARS characters, '…' marking a cut, never between a surrogate pair's halves. */
function cutMessage(text: string): string {
  if (text.length <= MAX_MESSAGE_CHARS) return text;
  let end = MAX_MESSAGE_CHARS - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}

export function encodeDrain(m: Omit<Drain, 'type'>): Uint8Array {
  return allocFrame({ type: 'drain', ...m }, []).bytes;
}

export function encodeHoldings(m: Omit<Holdings, 'type'>): Uint8Array {
  return allocFrame({ type: 'holdings', ...m }, []).bytes;
}

export interface DispatchShape {
  readonly id: number;
  readonly layer: number;
  readonly wire: WireDType;
  readonly numTokens: number;
  readonly numPairs: number;
  readonly hidden: number;
  readonly index: ExpertIndexDType;
}

function dispatchHeader(s: DispatchShape): Record<string, unknown> {
  return {
    type: 'dispatch',
    id: s.id,
    layer: s.layer,
    wire: s.wire,
    index: s.index,
    tokens: s.numTokens,
    pairs: s.numPairs,
  };
}

function dispatchSections(s: DispatchShape): number[] {
  return [
    s.numTokens * s.hidden * wireElementBytes(s.wire),
    (s.numTokens + 1) * 4,
    s.numPairs * expertIndexBytes(s.index),
    s.numPairs * 4,
  ];
}

export interface DispatchRequestFrame {
  readonly bytes: Uint8Array;
  readonly hidden: WireArray;
  readonly offsets: Int32Array;
  readonly experts: ExpertIndexArray;
  readonly weights: Float32Array;
}

/** A dispatch frame with its header written and sections to fill (views of `bytes`). */
export function allocDispatchRequest(s: DispatchShape, alloc?: FrameAllocator): DispatchRequestFrame {
  const frame = allocFrame(dispatchHeader(s), dispatchSections(s), alloc);
  const [hidden, offsets, experts, weights] = frame.sections as [
    Uint8Array,
    Uint8Array,
    Uint8Array,
    Uint8Array,
  ];
  return {
    bytes: frame.bytes,
    hidden: wireSection(s.wire, hidden, 'hidden'),
    offsets: sectionView(Int32Array, offsets, 'offsets'),
    experts: expertView(s.index, experts),
    weights: sectionView(Float32Array, weights, 'weights'),
  };
}

/**
 * More than a dispatch frame ever adds to its sections: prefix, header (seven short keys, integers
 * and enum strings: at most 148 bytes at the largest values) and the 8-byte alignment of each part.
 */
const DISPATCH_OVERHEAD_BOUND_BYTES = 256;

/** At least the bytes of a dispatch frame of this many rows and pairs, whatever its id and layer. */
export type DispatchSizeBound = (rows: number, pairs: number) => number;

/**
 * The bound of dispatch frames of this wire, hidden size and index type, for any id and layer: the
 * sections' sizes exactly, the header and alignment bounded. Arithmetic only, for the checks on
 * every request and row, where sizing the header (~1 us) would cost more than the rest.
 */
export function dispatchSizeBound(s: Pick<DispatchShape, 'wire' | 'hidden' | 'index'>): DispatchSizeBound {
  // dispatchSections: rows x hidden x element, (rows + 1) offsets, pairs x (index + weight).
  const perRow = s.hidden * wireElementBytes(s.wire) + 4;
  const perPair = expertIndexBytes(s.index) + 4;
  const overhead = DISPATCH_OVERHEAD_BOUND_BYTES + 4;
  return (rows, pairs) => overhead + rows * perRow + pairs * perPair;
}

/** Size in bytes of the dispatch frame of this shape, without building it (for accounting). */
export function dispatchRequestBytes(s: DispatchShape): number {
  return frameTotal(dispatchHeader(s), dispatchSections(s));
}

export interface ResultShape {
  readonly id: number;
  readonly wire: WireDType;
  readonly numTokens: number;
  readonly hidden: number;
}

function resultHeader(s: ResultShape): Record<string, unknown> {
  return { type: 'result', id: s.id, wire: s.wire, tokens: s.numTokens };
}

export function allocDispatchResult(s: ResultShape): { bytes: Uint8Array; partial: WireArray } {
  const frame = allocFrame(resultHeader(s), [s.numTokens * s.hidden * wireElementBytes(s.wire)]);
  return { bytes: frame.bytes, partial: wireSection(s.wire, frame.sections[0]!, 'partial') };
}

export function dispatchResultBytes(s: ResultShape): number {
  return frameTotal(resultHeader(s), [s.numTokens * s.hidden * wireElementBytes(s.wire)]);
}
