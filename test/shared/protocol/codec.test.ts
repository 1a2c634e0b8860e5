// The wire format both sides speak: frames round-trip with aligned zero-copy views (copies only
// when the frame itself sits at a misaligned offset), and every malformed input a peer could send
// is rejected with a ProtocolError whose code says what was wrong.

import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  allocDispatchRequest,
  allocDispatchResult,
  type DecodeLimits,
  type DispatchShape,
  decodeMessage,
  dispatchRequestBytes,
  dispatchResultBytes,
  dispatchSizeBound,
  encodeErrorReply,
  encodeHello,
  encodeHoldings,
  encodeRefuse,
  encodeWelcome,
  MAX_MESSAGE_CHARS,
  MAX_PAIR_WEIGHT,
  requestIdOf,
} from '../../../shared/protocol/codec.js';
import { ProtocolError, type ProtocolErrorCode } from '../../../shared/protocol/errors.js';
import { allocFrame, decodeFrame, FRAME_MAGIC, FRAME_PREFIX_BYTES } from '../../../shared/protocol/frame.js';
import {
  type ExpertIndexDType,
  expertIndexDType,
  PROTOCOL_VERSION,
} from '../../../shared/protocol/messages.js';
import { fromWire, toWire, type WireDType } from '../../../shared/protocol/wire-dtype.js';

const H = 8;
const limits: DecodeLimits = { maxFrameBytes: 1 << 20, hidden: H, numExperts: 8, numLayers: 4 };

function expectProtocolError(fn: () => unknown, code: ProtocolErrorCode, message: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe(code);
    expect((err as Error).message).toMatch(message);
    return;
  }
  throw new Error('expected a ProtocolError');
}

/** A dispatch of 3 tokens: token 0 -> experts 1, 5; token 1 -> 2; token 2 -> 7, 0. */
function sampleDispatch(wire: WireDType = 'fp32', id = 7): { bytes: Uint8Array; hidden: Float32Array } {
  const shape: DispatchShape = { id, layer: 2, wire, numTokens: 3, numPairs: 5, hidden: H, index: 'uint8' };
  const frame = allocDispatchRequest(shape);
  const hidden = Float32Array.from({ length: 3 * H }, (_, i) => (i - 11) / 4);
  toWire(hidden, wire, frame.hidden);
  frame.offsets.set([0, 2, 3, 5]);
  frame.experts.set([1, 5, 2, 7, 0]);
  frame.weights.set([0.75, 0.25, 1, 0.5, 0.5]);
  expect(frame.bytes.byteLength).toBe(dispatchRequestBytes(shape));
  return { bytes: frame.bytes, hidden };
}

/** Rewrites a frame's header (keeping its sections) to test header validation. */
function withHeader(
  bytes: Uint8Array,
  edit: (h: Record<string, unknown>) => Record<string, unknown>,
): Uint8Array {
  const { header, sections } = decodeFrame(bytes, limits.maxFrameBytes);
  const out = allocFrame(
    edit({ ...header }),
    sections.map((s) => s.byteLength),
  );
  sections.forEach((s, i) => {
    out.sections[i]!.set(s);
  });
  return out.bytes;
}

describe('frames', () => {
  it('puts every section at an 8-byte aligned offset and decodes them as views of the input', () => {
    const { bytes } = sampleDispatch();
    const { sections } = decodeFrame(bytes, limits.maxFrameBytes);
    for (const s of sections) {
      expect(s.byteOffset % 8).toBe(0);
      expect(s.buffer).toBe(bytes.buffer);
    }
    const msg = decodeMessage(bytes, limits);
    if (msg.type !== 'dispatch') throw new Error('expected a dispatch');
    expect(msg.hidden.buffer).toBe(bytes.buffer);
    expect(msg.weights.buffer).toBe(bytes.buffer);
  });

  it('copies sections only when the frame sits at a misaligned offset, with the same values', () => {
    const { bytes, hidden } = sampleDispatch();
    const shifted = new Uint8Array(bytes.byteLength + 3);
    shifted.set(bytes, 3);
    const msg = decodeMessage(shifted.subarray(3), limits);
    if (msg.type !== 'dispatch') throw new Error('expected a dispatch');
    expect(msg.hidden.buffer).not.toBe(shifted.buffer);
    expect(Array.from(msg.hidden)).toEqual(Array.from(hidden));
    expect(Array.from(msg.weights)).toEqual([0.75, 0.25, 1, 0.5, 0.5]);
  });

  it('builds a frame in a reused buffer, zeroing what the last frame left there', () => {
    const reused = new ArrayBuffer(4096);
    new Uint8Array(reused).fill(0xab);
    const alloc = (n: number) => new Uint8Array(reused, 0, n).fill(0);
    const f = allocDispatchRequest(
      { id: 3, layer: 0, wire: 'bf16', numTokens: 1, numPairs: 1, hidden: H, index: 'uint8' },
      alloc,
    );
    expect(f.bytes.buffer).toBe(reused);
    f.offsets.set([0, 1]);
    f.experts.set([2]);
    f.weights.set([1]);
    const msg = decodeMessage(f.bytes, limits);
    expect(msg).toMatchObject({ type: 'dispatch', id: 3, numTokens: 1 });
    if (msg.type === 'dispatch') expect(Array.from(msg.hidden)).toEqual(new Array(H).fill(0));
    expect(() => allocFrame({ type: 'x' }, [3], (n) => new Uint8Array(n + 1))).toThrow(/allocator gave/);
  });

  it('round-trips arbitrary section lengths', () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat(100), { maxLength: 6 }),
        fc.dictionary(fc.string(), fc.nat()),
        (lengths, extra) => {
          const frame = allocFrame({ ...extra, type: 'x' }, lengths);
          frame.sections.forEach((s, i) => {
            s.fill(i + 1);
          });
          const decoded = decodeFrame(frame.bytes, 1 << 20);
          expect(decoded.sections.map((s) => s.byteLength)).toEqual(lengths);
          decoded.sections.forEach((s, i) => {
            expect(s.every((b) => b === i + 1)).toBe(true);
          });
          expect(frame.bytes.byteLength % 8).toBe(0);
        },
      ),
    );
  });
});

describe('messages', () => {
  it('round-trip hello, welcome and error replies', () => {
    const hello = decodeMessage(
      encodeHello({ version: PROTOCOL_VERSION, fingerprint: 'ab'.repeat(32), client: 't' }),
      limits,
    );
    expect(hello).toEqual({
      type: 'hello',
      version: PROTOCOL_VERSION,
      fingerprint: 'ab'.repeat(32),
      client: 't',
    });
    const welcome = {
      version: PROTOCOL_VERSION,
      fingerprint: 'f',
      worker: 'pid 1',
      experts: [0, 1, 2],
      numLayers: 4,
      numExperts: 8,
      hidden: H,
      wire: ['fp32', 'bf16'] as WireDType[],
      maxFrameBytes: 1024,
    };
    expect(decodeMessage(encodeWelcome(welcome), limits)).toEqual({ type: 'welcome', ...welcome });
    expect(decodeMessage(encodeErrorReply({ id: null, code: 'oversize', message: 'm' }), limits)).toEqual({
      type: 'error',
      id: null,
      code: 'oversize',
      message: 'm',
    });
  });

  it.each(['fp32', 'fp16', 'bf16'] as const)('dispatch request and result round-trip in %s', (wire) => {
    const { bytes, hidden } = sampleDispatch(wire);
    const msg = decodeMessage(bytes, limits);
    if (msg.type !== 'dispatch') throw new Error('expected a dispatch');
    expect(msg).toMatchObject({ id: 7, layer: 2, wire, numTokens: 3 });
    expect(Array.from(msg.offsets)).toEqual([0, 2, 3, 5]);
    expect(Array.from(msg.experts)).toEqual([1, 5, 2, 7, 0]);
    // Every sample value is exactly representable in the 16-bit formats.
    expect(Array.from(fromWire(msg.hidden, wire))).toEqual(Array.from(hidden));

    const result = allocDispatchResult({ id: 7, wire, numTokens: 3, hidden: H });
    toWire(hidden, wire, result.partial);
    expect(result.bytes.byteLength).toBe(dispatchResultBytes({ id: 7, wire, numTokens: 3, hidden: H }));
    const back = decodeMessage(result.bytes, limits);
    if (back.type !== 'result') throw new Error('expected a result');
    expect(Array.from(fromWire(back.partial, wire))).toEqual(Array.from(hidden));
  });

  it('cut a refusal or error message beyond MAX_MESSAGE_CHARS where it is encoded, so it still decodes', () => {
    // Emoji (two UTF-16 units each): a cut at MAX_MESSAGE_CHARS - 1 units would fall between the
    // halves of a pair, so the pair goes too.
    const long = '😀'.repeat(MAX_MESSAGE_CHARS);
    const refusal = decodeMessage(
      encodeRefuse({ version: PROTOCOL_VERSION, reason: 'url', message: long }),
      limits,
    );
    const error = decodeMessage(encodeErrorReply({ id: 1, code: 'compute-failed', message: long }), limits);
    for (const m of [refusal, error]) {
      if (m.type !== 'refuse' && m.type !== 'error')
        throw new Error(`expected a refuse or an error, got ${m.type}`);
      expect(m.message.length).toBe(MAX_MESSAGE_CHARS - 1);
      expect(m.message.endsWith('😀…')).toBe(true);
      expect(long.startsWith(m.message.slice(0, -1))).toBe(true);
    }
    const exact = 'y'.repeat(MAX_MESSAGE_CHARS);
    const kept = decodeMessage(
      encodeRefuse({ version: PROTOCOL_VERSION, reason: 'auth', message: exact }),
      limits,
    );
    expect(kept).toMatchObject({ type: 'refuse', message: exact });
  });

  it('round-trip a holdings notice; refuse one with a negative or fractional expert', () => {
    expect(decodeMessage(encodeHoldings({ experts: [0, 3, 7] }), limits)).toEqual({
      type: 'holdings',
      experts: [0, 3, 7],
    });
    for (const bad of [[-1], [1.5]])
      expect(() => decodeMessage(allocFrame({ type: 'holdings', experts: bad }, []).bytes, limits)).toThrow(
        /invalid holdings header: experts/,
      );
  });

  it('bf16 on the wire keeps 8 significant bits (relative error <= 2^-8)', () => {
    fc.assert(
      fc.property(
        fc.float32Array({ noNaN: true, noDefaultInfinity: true, minLength: 1, maxLength: 64 }),
        (xs) => {
          const wire = new Uint16Array(xs.length);
          toWire(xs, 'bf16', wire);
          const back = fromWire(wire, 'bf16');
          xs.forEach((x, i) => {
            if (Math.abs(x) > 1e-37 && Math.abs(x) < 3e38)
              expect(Math.abs(back[i]! - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -8);
          });
        },
      ),
    );
  });

  it('chooses the smallest expert index type', () => {
    expect(expertIndexDType(8)).toBe('uint8');
    expect(expertIndexDType(256)).toBe('uint8');
    expect(expertIndexDType(257)).toBe('int16');
    expect(expertIndexDType(40000)).toBe('int32');
  });
});

describe('malformed input', () => {
  it('rejects a frame that is not a kmoe frame', () => {
    expectProtocolError(
      () => decodeMessage(new Uint8Array(4), limits),
      'bad-frame',
      /shorter than its prefix/,
    );
    const junk = new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n');
    expectProtocolError(() => decodeMessage(junk, limits), 'bad-frame', /bad magic/);
  });

  it('rejects a frame above the size limit before reading it', () => {
    const { bytes } = sampleDispatch();
    expectProtocolError(
      () => decodeMessage(bytes, { ...limits, maxFrameBytes: bytes.byteLength - 1 }),
      'oversize',
      new RegExp(`${bytes.byteLength} bytes exceeds the limit`),
    );
  });

  it('rejects a header length beyond the frame and a header that is not a map', () => {
    const { bytes } = sampleDispatch();
    const bad = bytes.slice();
    new DataView(bad.buffer).setUint32(4, bytes.byteLength, true);
    expectProtocolError(() => decodeMessage(bad, limits), 'bad-frame', /header length/);

    const notMap = new Uint8Array(16);
    const v = new DataView(notMap.buffer);
    v.setUint32(0, FRAME_MAGIC, true);
    v.setUint32(4, 1, true);
    notMap[8] = 0x2a; // msgpack positive fixint 42
    expectProtocolError(
      () => decodeMessage(notMap, limits),
      'bad-header',
      /header is a number, expected a msgpack map/,
    );
  });

  it('rejects unknown types and headers that miss fields', () => {
    const { bytes } = sampleDispatch();
    expectProtocolError(
      () =>
        decodeMessage(
          withHeader(bytes, (h) => ({ ...h, type: 'frobnicate' })),
          limits,
        ),
      'bad-header',
      /unknown message type "frobnicate"/,
    );
    // Whatever msgpack decodes is a type a peer can send: named in the error, never a crash of it.
    // A BigInt beyond int64 travels as msgpackr's extension 0x42 and decodes as a BigInt.
    const header = new Packr({ useRecords: false, useBigIntExtension: true }).pack({
      type: 2n ** 70n,
      sections: [],
    });
    // Frames are padded to 8 bytes.
    const bigintType = new Uint8Array(Math.ceil((FRAME_PREFIX_BYTES + header.byteLength) / 8) * 8);
    new DataView(bigintType.buffer).setUint32(0, FRAME_MAGIC, true);
    new DataView(bigintType.buffer).setUint32(4, header.byteLength, true);
    bigintType.set(header, FRAME_PREFIX_BYTES);
    expectProtocolError(
      () => decodeMessage(bigintType, limits),
      'bad-header',
      /unknown message type of type bigint/,
    );
    for (const [type, named] of [
      [new Date(0), /unknown message type of type Date/],
      [{ a: 1 }, /unknown message type of type Object/],
      // A map whose `constructor` key names itself: the peer's text stays out of the message.
      [{ constructor: { name: 'x'.repeat(1000) } }, /unknown message type of type Object \(/],
      [12, /unknown message type 12 /],
      ['x'.repeat(10_000), /unknown message type "x{64}…" /],
    ] as const) {
      expectProtocolError(
        () =>
          decodeMessage(
            withHeader(bytes, (h) => ({ ...h, type })),
            limits,
          ),
        'bad-header',
        named,
      );
    }
    expectProtocolError(
      () =>
        decodeMessage(
          withHeader(bytes, ({ layer: _l, ...h }) => h),
          limits,
        ),
      'bad-header',
      /invalid dispatch header: layer/,
    );
    expectProtocolError(
      () =>
        decodeMessage(
          withHeader(bytes, (h) => ({ ...h, wire: 'fp8' })),
          limits,
        ),
      'bad-header',
      /wire/,
    );
  });

  it('rejects sections whose sizes do not match n * hidden * dtype size', () => {
    const { bytes } = sampleDispatch();
    expectProtocolError(
      () => decodeMessage(bytes, { ...limits, hidden: H * 2 }),
      'bad-section',
      /hidden \[3, 16\] fp32 section is 96 bytes, expected 192/,
    );
    expectProtocolError(
      () =>
        decodeMessage(
          withHeader(bytes, (h) => ({ ...h, tokens: 4 })),
          limits,
        ),
      'bad-section',
      /section is \d+ bytes, expected/,
    );
    // Truncated: the header promises more bytes than the frame has.
    expectProtocolError(
      () => decodeMessage(bytes.subarray(0, bytes.byteLength - 8), limits),
      'bad-section',
      /need/,
    );
    // Trailing garbage is rejected too.
    const longer = new Uint8Array(bytes.byteLength + 8);
    longer.set(bytes);
    expectProtocolError(() => decodeMessage(longer, limits), 'bad-section', /need/);
  });

  it('rejects out-of-range experts and layers, bad offsets and non-finite weights', () => {
    const variant = (edit: (f: ReturnType<typeof allocDispatchRequest>) => void, layer = 2) => {
      const f = allocDispatchRequest({
        id: 9,
        layer,
        wire: 'fp32',
        numTokens: 2,
        numPairs: 2,
        hidden: H,
        index: 'uint8',
      });
      f.offsets.set([0, 1, 2]);
      f.experts.set([3, 4]);
      f.weights.set([1, 1]);
      edit(f);
      return f.bytes;
    };
    expectProtocolError(
      () =>
        decodeMessage(
          variant((f) => f.experts.set([3, 8])),
          limits,
        ),
      'bad-value',
      /expert index 8 is out of range/,
    );
    expectProtocolError(
      () =>
        decodeMessage(
          variant(() => {}, 4),
          limits,
        ),
      'bad-value',
      /layer 4 is out of range/,
    );
    expectProtocolError(
      () =>
        decodeMessage(
          variant((f) => f.weights.set([1, Number.NaN])),
          limits,
        ),
      'bad-value',
      /weight of pair 1 is NaN/,
    );
    expectProtocolError(
      () =>
        decodeMessage(
          variant((f) => f.weights.set([Infinity, 1])),
          limits,
        ),
      'bad-value',
      /Infinity/,
    );
    expectProtocolError(
      () =>
        decodeMessage(
          variant((f) => f.offsets.set([0, 2, 2])),
          limits,
        ),
      'bad-value',
      /token 1 has no expert pairs/,
    );
    expectProtocolError(
      () =>
        decodeMessage(
          variant((f) => f.offsets.set([1, 1, 2])),
          limits,
        ),
      'bad-value',
      /offsets must run from 0 to 2/,
    );
  });

  it('refuses more pairs than experts per token, a repeated expert, and weights outside [0, MAX_PAIR_WEIGHT]', () => {
    const dispatch = (offsets: number[], experts: number[], weights: number[]) => {
      const f = allocDispatchRequest({
        id: 5,
        layer: 0,
        wire: 'fp32',
        numTokens: offsets.length - 1,
        numPairs: experts.length,
        hidden: H,
        index: 'uint8',
      });
      f.offsets.set(offsets);
      f.experts.set(experts);
      f.weights.set(weights);
      return f.bytes;
    };
    // 9 pairs for one token of a model with 8 experts: refused before any section is walked.
    expectProtocolError(
      () => decodeMessage(dispatch([0, 9], [0, 1, 2, 3, 4, 5, 6, 7, 0], new Array(9).fill(0.1)), limits),
      'bad-value',
      /9 expert pairs for 1 tokens, more than 8 per token/,
    );
    expectProtocolError(
      () => decodeMessage(dispatch([0, 3], [2, 5, 2], [0.5, 0.25, 0.25]), limits),
      'bad-value',
      /token 0 names expert 2 twice \(pairs 0 and 2\)/,
    );
    // The same expert for two different tokens is fine.
    const ok = decodeMessage(dispatch([0, 1, 2], [2, 2], [1, MAX_PAIR_WEIGHT]), limits);
    expect(ok.type === 'dispatch' && Array.from(ok.experts)).toEqual([2, 2]);
    expectProtocolError(
      () => decodeMessage(dispatch([0, 1, 2], [2, 3], [1, -0.5]), limits),
      'bad-value',
      /weight of pair 1 is -0.5; routing weights are finite numbers in \[0, 64\]/,
    );
    expectProtocolError(
      () => decodeMessage(dispatch([0, 1], [2], [MAX_PAIR_WEIGHT * 1.5]), limits),
      'bad-value',
      /weight of pair 0 is 96/,
    );
    expect(() => decodeMessage(dispatch([0, 1], [2], [0]), limits)).not.toThrow();
  });

  it('reads the request id of a frame that failed validation when its header allows', () => {
    const bad = allocDispatchRequest({
      id: 41,
      layer: 9,
      wire: 'fp32',
      numTokens: 1,
      numPairs: 1,
      hidden: H,
      index: 'uint8',
    });
    expect(requestIdOf(bad.bytes, limits.maxFrameBytes)).toBe(41);
    expect(requestIdOf(new Uint8Array(3), limits.maxFrameBytes)).toBeNull();
  });
});

describe('frame sizes for accounting', () => {
  it('equal the bytes of the frame built, across integer widths (cached by size class)', () => {
    // Integers at and around every msgpack width boundary, so a wrong size class would show.
    const edge = fc.constantFrom(0, 1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1);
    const anyId = fc.oneof(edge, fc.integer({ min: 0, max: 2 ** 32 - 1 }));
    fc.assert(
      fc.property(
        anyId,
        fc.integer({ min: 0, max: 3 }),
        fc.constantFrom<WireDType>('fp32', 'fp16', 'bf16'),
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 0, max: 3 }),
        (id, layer, wire, numTokens, extraPairs) => {
          const numPairs = numTokens + extraPairs;
          const shape: DispatchShape = { id, layer, wire, numTokens, numPairs, hidden: H, index: 'uint8' };
          expect(dispatchRequestBytes(shape)).toBe(allocDispatchRequest(shape).bytes.byteLength);
          const result = { id, wire, numTokens, hidden: H };
          expect(dispatchResultBytes(result)).toBe(allocDispatchResult(result).bytes.byteLength);
        },
      ),
      { numRuns: 500, seed: 13 },
    );
  });

  it('are bounded from the sections alone for any id, layer and width (the bound backends check first)', () => {
    const edge = fc.constantFrom(0, 127, 128, 65_536, 2 ** 32 - 1);
    fc.assert(
      fc.property(
        edge,
        edge,
        edge,
        edge,
        fc.constantFrom<WireDType>('fp32', 'fp16', 'bf16'),
        fc.constantFrom<ExpertIndexDType>('uint8', 'int16', 'int32'),
        (id, layer, numTokens, numPairs, wire, index) => {
          const shape: DispatchShape = { id, layer, wire, numTokens, numPairs, hidden: 7, index };
          const exact = dispatchRequestBytes(shape);
          const bound = dispatchSizeBound(shape)(numTokens, numPairs);
          expect(bound).toBeGreaterThanOrEqual(exact);
          // Tight enough to matter: within a header's worth.
          expect(bound - exact).toBeLessThan(256);
        },
      ),
      { numRuns: 300, seed: 17 },
    );
  });
});
