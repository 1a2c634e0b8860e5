// Fuzzing a real `kmoe worker` with frames: fast-check generates raw bytes, frames with arbitrary
// msgpack headers and sections, valid dispatches with one field mangled (layer, experts, offsets,
// weights: non-finite, negative, too big; a repeated expert, more pairs than experts per token;
// NaN/infinite hidden states, sizes), valid dispatches, text frames, and first frames of
// new connections (handshakes). Every frame after the handshake gets exactly one reply, a result
// or a typed error; a bad handshake is refused. After each batch: the process is alive, a fixed
// dispatch gives bit-identical results, and its resident memory stays bounded.

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../shared/model/checkpoint.js';
import { allocDispatchRequest, type DecodeLimits, encodeHello } from '../../shared/protocol/codec.js';
import { allocFrame } from '../../shared/protocol/frame.js';
import { type Message, PROTOCOL_VERSION } from '../../shared/protocol/messages.js';
import type { WireDType } from '../../shared/protocol/wire-dtype.js';
import { MODEL_DIR } from '../helpers/paths.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { startWorker, type WorkerProcess } from '../helpers/worker-process.js';
import { batchSizes, caseTimeout, expectBoundedRss, fuzzCases, fuzzSeed, rssMiB } from './fuzz-budget.js';

const H = 256;
const LAYERS = 4;
/** Experts of the demo model: a token may name each at most once. */
const EXPERTS = 8;
const limits: DecodeLimits = { maxFrameBytes: 1 << 26, hidden: H, numExperts: EXPERTS, numLayers: LAYERS };
const FRAME_CASES = fuzzCases(4000);
const HANDSHAKE_CASES = Math.max(20, Math.round(FRAME_CASES / 20));
const BATCHES = 4;
const ERROR_CODES = [
  'bad-frame',
  'oversize',
  'bad-header',
  'bad-section',
  'bad-value',
  'unexpected-message',
  'not-held',
  'compute-failed',
];

let worker: WorkerProcess;
let fingerprint: string;
let seed: number;
let peer: RawPeer;
let reference: Uint8Array;
let baselineRss: number;
const outcomes = new Map<string, number>();

interface Dispatch {
  id: number;
  layer: number;
  wire: WireDType;
  tokens: number;
  experts: number[][];
  fill: number;
}

function encodeDispatch(d: Dispatch): { bytes: Uint8Array; hidden: Uint8Array; weights: Float32Array } {
  const pairs = d.experts.reduce((n, e) => n + e.length, 0);
  const f = allocDispatchRequest({
    id: d.id,
    layer: d.layer,
    wire: d.wire,
    numTokens: d.tokens,
    numPairs: pairs,
    hidden: H,
    index: 'uint8',
  });
  for (let i = 0; i < f.hidden.length; i++) {
    const x = Math.sin(i * 0.13 + d.fill);
    if (d.wire === 'fp32') (f.hidden as Float32Array)[i] = x;
    else (f.hidden as Uint16Array)[i] = d.wire === 'bf16' ? bf16Bits(x) : 0x3800;
  }
  let at = 0;
  f.offsets[0] = 0;
  d.experts.forEach((es, t) => {
    for (const e of es) {
      f.experts[at] = e;
      f.weights[at] = 1 / es.length;
      at++;
    }
    f.offsets[t + 1] = at;
  });
  return {
    bytes: f.bytes,
    hidden: new Uint8Array(f.hidden.buffer, f.hidden.byteOffset, f.hidden.byteLength),
    weights: f.weights,
  };
}

function bf16Bits(x: number): number {
  return new Uint32Array(Float32Array.of(x).buffer)[0]! >>> 16;
}

const dispatchArb: fc.Arbitrary<Dispatch> = fc.integer({ min: 1, max: 4 }).chain((tokens) =>
  fc.record({
    id: fc.nat(2 ** 31),
    layer: fc.nat(LAYERS - 1),
    wire: fc.constantFrom<WireDType>('fp32', 'bf16', 'fp16'),
    tokens: fc.constant(tokens),
    experts: fc.array(fc.uniqueArray(fc.nat(3), { minLength: 1, maxLength: 2 }), {
      minLength: tokens,
      maxLength: tokens,
    }),
    fill: fc.integer({ min: 0, max: 1000 }),
  }),
);

type Mangle =
  | { kind: 'none' }
  | { kind: 'layer'; value: number }
  | { kind: 'expert'; value: number }
  | { kind: 'weight'; value: number }
  | { kind: 'duplicate' }
  | { kind: 'pairs'; experts: number[] }
  | { kind: 'hidden'; at: number; bits: number }
  | { kind: 'truncate'; keep: number }
  | { kind: 'append'; bytes: Uint8Array }
  | { kind: 'flip'; at: number; xor: number };

const mangleArb: fc.Arbitrary<Mangle> = fc.oneof(
  { weight: 2, arbitrary: fc.constant({ kind: 'none' as const }) },
  fc.record({ kind: fc.constant('layer' as const), value: fc.integer({ min: LAYERS, max: 1000 }) }),
  fc.record({ kind: fc.constant('expert' as const), value: fc.integer({ min: 4, max: 255 }) }),
  fc.record({
    kind: fc.constant('weight' as const),
    // Non-finite, negative, and beyond MAX_PAIR_WEIGHT (64).
    value: fc.constantFrom(
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      -1,
      -1e30,
      65,
      1e30,
    ),
  }),
  // Token 0 names its first expert twice.
  fc.constant({ kind: 'duplicate' as const }),
  // Token 0 with more pairs than the model has experts (8), up to a few hundred.
  fc.record({
    kind: fc.constant('pairs' as const),
    experts: fc.array(fc.nat(3), { minLength: EXPERTS + 1, maxLength: 400 }),
  }),
  fc.record({
    kind: fc.constant('hidden' as const),
    at: fc.nat(),
    bits: fc.constantFrom(0x7fc0, 0x7f80, 0xff80, 0x7c00, 0xfc00, 0x7e00),
  }),
  fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
);

/** The frame bytes and whether the worker must compute it (a valid dispatch of held experts). */
function mangled(d: Dispatch, m: Mangle): { bytes: Uint8Array; valid: boolean } {
  const { bytes, hidden, weights } = encodeDispatch(d);
  switch (m.kind) {
    case 'none':
      return { bytes, valid: true };
    case 'layer':
      return { bytes: encodeDispatch({ ...d, layer: m.value }).bytes, valid: false };
    case 'expert':
      return {
        bytes: encodeDispatch({ ...d, experts: [[m.value], ...d.experts.slice(1)] }).bytes,
        valid: false,
      };
    case 'weight':
      weights[0] = m.value;
      return { bytes, valid: false };
    case 'duplicate':
      return {
        bytes: encodeDispatch({
          ...d,
          experts: [[d.experts[0]![0]!, ...d.experts[0]!], ...d.experts.slice(1)],
        }).bytes,
        valid: false,
      };
    case 'pairs':
      return {
        bytes: encodeDispatch({ ...d, experts: [m.experts, ...d.experts.slice(1)] }).bytes,
        valid: false,
      };
    case 'hidden': {
      // A non-finite value in the wire dtype of the frame (the fp32 pattern widens the 16-bit one).
      const at = m.at % (hidden.byteLength / (d.wire === 'fp32' ? 4 : 2));
      if (d.wire === 'fp32')
        new DataView(hidden.buffer, hidden.byteOffset).setUint32(at * 4, m.bits << 16, true);
      else new DataView(hidden.buffer, hidden.byteOffset).setUint16(at * 2, m.bits, true);
      const finite = d.wire === 'fp16' ? (m.bits & 0x7c00) !== 0x7c00 : (m.bits & 0x7f80) !== 0x7f80;
      return { bytes, valid: finite };
    }
    case 'truncate':
      return { bytes: bytes.subarray(0, m.keep % bytes.byteLength), valid: false };
    case 'append': {
      const out = new Uint8Array(bytes.byteLength + m.bytes.byteLength);
      out.set(bytes);
      out.set(m.bytes, bytes.byteLength);
      return { bytes: out, valid: false };
    }
    case 'flip': {
      // Anywhere: the prefix, the header or the tensors (then it may well still be valid).
      const out = Uint8Array.from(bytes);
      out[m.at % out.byteLength]! ^= m.xor;
      return { bytes: out, valid: false };
    }
  }
}

const headerValue = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 12 }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer({ min: -1, max: 300 }), { maxLength: 5 }),
);

/** A frame of arbitrary header fields (some named like a dispatch's) and random sections. */
const headerFrameArb = fc
  .record({
    type: fc.oneof(
      fc.constantFrom('dispatch', 'hello', 'result', 'error', 'welcome', 'refuse'),
      fc.string({ maxLength: 8 }),
    ),
    fields: fc.dictionary(
      fc.oneof(
        fc.constantFrom('id', 'layer', 'wire', 'numTokens', 'index', 'version', 'code'),
        fc.string({ maxLength: 6 }),
      ),
      headerValue,
      { maxKeys: 6 },
    ),
    sections: fc.array(fc.uint8Array({ maxLength: 2048 }), { maxLength: 5 }),
  })
  .map(({ type, fields, sections }) => {
    const frame = allocFrame(
      { ...fields, type },
      sections.map((s) => s.byteLength),
    );
    sections.forEach((s, i) => {
      frame.sections[i]!.set(s);
    });
    return frame.bytes;
  });

const frameCaseArb = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ kind: fc.constant('dispatch' as const), d: dispatchArb, m: mangleArb }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('header' as const), bytes: headerFrameArb }) },
  fc.record({ kind: fc.constant('bytes' as const), bytes: fc.uint8Array({ maxLength: 256 }) }),
  fc.record({ kind: fc.constant('text' as const), text: fc.string({ maxLength: 40 }) }),
);

function count(outcome: string): void {
  outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
}

function checkReply(reply: Message, expectCompute: boolean, what: () => string): void {
  if (reply.type === 'result') {
    count('result');
    return;
  }
  expect(reply.type, what()).toBe('error');
  const code = (reply as { code: string }).code;
  count(code);
  expect(ERROR_CODES, `${what()}: ${JSON.stringify(reply)}`).toContain(code);
  // Finite inputs whose result overflows (a huge hidden value) are refused, never answered with NaN.
  const overflow = code === 'bad-value' && /non-finite result/.test((reply as { message: string }).message);
  expect(
    expectCompute && code !== 'compute-failed' && !overflow,
    `${what()}: valid dispatch refused: ${JSON.stringify(reply)}`,
  ).toBe(false);
}

async function greeted(): Promise<RawPeer> {
  const p = await RawPeer.open(worker.url, limits);
  p.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint, client: 'fuzz' }));
  expect((await p.next()).type).toBe('welcome');
  return p;
}

const KNOWN: Dispatch = { id: 1, layer: 2, wire: 'fp32', tokens: 3, experts: [[0, 1], [2], [3, 0]], fill: 7 };

async function knownResult(): Promise<Uint8Array> {
  peer.send(encodeDispatch(KNOWN).bytes);
  const reply = await peer.next();
  expect(reply.type).toBe('result');
  const partial = (reply as { partial: Float32Array }).partial;
  return new Uint8Array(partial.buffer.slice(partial.byteOffset, partial.byteOffset + partial.byteLength));
}

async function checkHealthy(what: string): Promise<void> {
  expect(
    worker.child.exitCode,
    `${what}: worker exited; stderr tail:\n${worker.stderr().slice(-3000)}`,
  ).toBeNull();
  expect(
    Buffer.from(await knownResult()).equals(Buffer.from(reference)),
    `${what}: known dispatch changed`,
  ).toBe(true);
  expectBoundedRss(worker.child.pid!, baselineRss, what);
}

beforeAll(async () => {
  const ckpt = await Checkpoint.open(MODEL_DIR);
  fingerprint = ckpt.fingerprint();
  await ckpt.close();
  worker = await startWorker('0-3');
  seed = fuzzSeed();
  peer = await greeted();
  reference = await knownResult();
  for (let i = 0; i < 20; i++) await knownResult();
  baselineRss = rssMiB(worker.child.pid!);
});

afterAll(async () => {
  const counts = [...outcomes.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}: ${n}`);
  console.log(`worker fuzz replies: ${counts.join(', ')}`);
  peer?.close();
  if (worker) expect(await worker.stop()).toBe(0);
});

describe('fuzzing kmoe worker', () => {
  it(
    `answers each of ${FRAME_CASES} generated frames with one result or typed error`,
    async () => {
      const sizes = batchSizes(FRAME_CASES, BATCHES);
      for (const [b, numRuns] of sizes.entries()) {
        await fc.assert(
          fc.asyncProperty(frameCaseArb, async (c) => {
            let expectCompute = false;
            if (c.kind === 'dispatch') {
              const { bytes, valid } = mangled(c.d, c.m);
              expectCompute = valid && c.m.kind !== 'flip';
              peer.send(bytes);
            } else if (c.kind === 'text') peer.send(c.text);
            else peer.send(c.bytes);
            checkReply(
              await peer.next(),
              expectCompute,
              () => `${c.kind} ${JSON.stringify(c).slice(0, 300)}`,
            );
          }),
          { numRuns, seed: seed + b, endOnFailure: true },
        );
        await checkHealthy(`frame batch ${b + 1}/${sizes.length} (seed ${seed + b})`);
      }
    },
    caseTimeout(FRAME_CASES),
  );

  it(
    `refuses ${HANDSHAKE_CASES} malformed handshakes and stays up`,
    async () => {
      const firsts = fc.sample(
        fc.oneof(
          fc.uint8Array({ maxLength: 128 }).map((b) => ({ bytes: b as Uint8Array, valid: false })),
          headerFrameArb.map((b) => ({ bytes: b, valid: false })),
          fc
            .record({
              version: fc.oneof(fc.constant(PROTOCOL_VERSION), fc.integer()),
              fingerprint: fc.oneof(fc.constant('x'), fc.string({ maxLength: 70 })),
              client: fc.string({ maxLength: 300 }),
            })
            .map((h) => ({ bytes: encodeHello(h), valid: false })),
          fc.string({ maxLength: 300 }).map((client) => ({
            bytes: encodeHello({ version: PROTOCOL_VERSION, fingerprint, client }),
            valid: true,
          })),
        ),
        { numRuns: HANDSHAKE_CASES, seed: seed + 100 },
      );
      for (const first of firsts) {
        const p = await RawPeer.open(worker.url, limits);
        p.send(first.bytes);
        const reply = await p.next();
        expect(reply.type).toBe(first.valid ? 'welcome' : 'refuse');
        count(`handshake ${reply.type}`);
        if (!first.valid) expect((await p.closed).code).toBe(1008);
        p.close();
      }
      await checkHealthy('handshakes');
      // Nothing a peer sent forged a log line: every line is one of the worker's own pino records.
      // (The text after the last newline may be a line still in flight.)
      for (const line of worker.stderr().split('\n').slice(0, -1)) {
        expect(JSON.parse(line)).toMatchObject({ component: 'kmoe-worker', level: expect.any(Number) });
      }
    },
    caseTimeout(HANDSHAKE_CASES * 5),
  );
});
