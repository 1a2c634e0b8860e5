import { readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { f32ToBf16, f32ToF16 } from '../../../shared/dtype.js';
import { SafetensorsError } from '../../../shared/model/errors.js';
import { SafetensorsFile } from '../../../shared/model/safetensors.js';
import {
  bytesOf,
  DEMO_DIR,
  DEMO_SHARD_1,
  DEMO_SHARD_2,
  encodeSafetensors,
  layout,
  makeTempDir,
  type RawTensor,
  writeSafetensors,
} from './fixtures.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await makeTempDir());
});
afterEach(async () => {
  await cleanup();
});

// Values exactly representable in their storage dtype, so reading back must be bit-exact.
const F32_VALUES = new Float32Array([1.5, -2.25, 3.4028234663852886e38, 1.401298464324817e-45, 0, -0]);
const BF16_BITS = f32ToBf16(new Float32Array([1, -0.5, 3.140625, 65536, -1e-3, 0.1015625]));
const F16_BITS = f32ToF16(new Float32Array([0.5, -65504, 2 ** -14, 2 ** -24]));

const SAMPLE: RawTensor[] = [
  { name: 'a.f32', dtype: 'F32', shape: [2, 3], bytes: bytesOf(F32_VALUES) },
  { name: 'b.bf16', dtype: 'BF16', shape: [3, 2], bytes: bytesOf(BF16_BITS) },
  { name: 'c.f16', dtype: 'F16', shape: [4], bytes: bytesOf(F16_BITS) },
];

/** Writes a file and returns the error open() raises for it. */
async function openError(bytes: Uint8Array, name = 'bad.safetensors'): Promise<SafetensorsError> {
  const file = path.join(dir, name);
  await writeFile(file, bytes);
  const err = await SafetensorsFile.open(file).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SafetensorsError);
  const st = err as SafetensorsError;
  expect(st.file).toBe(file);
  expect(st.message).toContain(file);
  return st;
}

function f32Tensor(name: string, begin: number, end: number, shape: number[]): Record<string, unknown> {
  return { [name]: { dtype: 'F32', shape, data_offsets: [begin, end] } };
}

describe('SafetensorsFile: reading valid files', () => {
  it('reads BF16, F16 and F32 tensors back bit-exactly, with dtype, shape and metadata', async () => {
    const file = path.join(dir, 'ok.safetensors');
    await writeSafetensors(file, SAMPLE, { format: 'pt', note: 'synthetic' });
    const st = await SafetensorsFile.open(file);
    try {
      expect(st.names()).toEqual(['a.f32', 'b.bf16', 'c.f16']);
      expect(st.metadata).toEqual({ format: 'pt', note: 'synthetic' });
      expect(st.info('b.bf16')).toEqual({
        name: 'b.bf16',
        dtype: 'BF16',
        shape: [3, 2],
        dataOffsets: [24, 36],
        byteLength: 12,
      });

      const a = await st.read('a.f32');
      expect(a.dtype).toBe('float32');
      expect(a.shape).toEqual([2, 3]);
      expect(a.data).toBeInstanceOf(Float32Array);
      expect(Array.from(a.data)).toEqual(Array.from(F32_VALUES));
      expect(Object.is(a.data[5], -0)).toBe(true);

      const b = await st.read('b.bf16');
      expect(b.dtype).toBe('bfloat16');
      expect(b.shape).toEqual([3, 2]);
      expect(b.data).toBeInstanceOf(Uint16Array);
      expect(Array.from(b.data)).toEqual(Array.from(BF16_BITS));
      expect(b.data[0]).toBe(0x3f80); // 1.0 in bf16

      const c = await st.read('c.f16');
      expect(c.dtype).toBe('float16');
      expect(c.shape).toEqual([4]);
      expect(Array.from(c.data)).toEqual(Array.from(F16_BITS));
      expect(c.data[0]).toBe(0x3800); // 0.5 in f16
      expect(c.data[1]).toBe(0xfbff); // -65504, the most negative finite f16
    } finally {
      await st.close();
    }
  });

  it('returns aligned typed arrays even when the data section starts at an odd file offset', async () => {
    const { header, data } = layout(SAMPLE);
    const json = JSON.stringify(header);
    // An odd JSON length puts the data section, and so every tensor, at an odd file offset.
    const padTo = json.length % 2 === 0 ? json.length + 1 : json.length;
    const file = path.join(dir, 'odd.safetensors');
    await writeFile(file, encodeSafetensors(header, data, { padTo }));
    const st = await SafetensorsFile.open(file);
    try {
      expect(st.headerBytes % 2).toBe(1);
      const a = await st.read('a.f32');
      expect(a.data.byteOffset % 4).toBe(0);
      expect(Array.from(a.data)).toEqual(Array.from(F32_VALUES));
      const b = await st.read('b.bf16');
      expect(Array.from(b.data)).toEqual(Array.from(BF16_BITS));
    } finally {
      await st.close();
    }
  });

  it('counts header bytes at open and then exactly the bytes of each tensor read', async () => {
    const file = path.join(dir, 'count.safetensors');
    await writeSafetensors(file, SAMPLE);
    const headerLength = (await readFile(file)).readBigUInt64LE(0);
    const st = await SafetensorsFile.open(file);
    try {
      expect(st.headerBytes).toBe(8 + Number(headerLength));
      expect(st.bytesRead).toBe(st.headerBytes);
      await st.read('c.f16');
      expect(st.bytesRead).toBe(st.headerBytes + 8);
      await st.read('a.f32');
      expect(st.bytesRead).toBe(st.headerBytes + 8 + 24);
    } finally {
      await st.close();
    }
  });

  it('accepts zero-sized tensors', async () => {
    const file = path.join(dir, 'empty.safetensors');
    await writeSafetensors(file, [
      { name: 'empty', dtype: 'F32', shape: [0, 4], bytes: new Uint8Array(0) },
      { name: 'one', dtype: 'F32', shape: [1], bytes: bytesOf(new Float32Array([7])) },
    ]);
    const st = await SafetensorsFile.open(file);
    try {
      const empty = await st.read('empty');
      expect(empty.shape).toEqual([0, 4]);
      expect(empty.data.length).toBe(0);
      expect(Array.from((await st.read('one')).data)).toEqual([7]);
    } finally {
      await st.close();
    }
  });

  it('reads a demo shard tensor with the values numpy reads from the same bytes', async () => {
    const st = await SafetensorsFile.open(path.join(DEMO_DIR, DEMO_SHARD_2));
    try {
      expect(st.metadata).toEqual({ format: 'pt' });
      expect(st.names()).toHaveLength(65);
      const norm = await st.read('model.norm.weight');
      expect(norm.dtype).toBe('bfloat16');
      expect(norm.shape).toEqual([256]);
      // bf16 bit patterns of 1.4609375 and 1.546875 (first two elements, numpy reference).
      expect(norm.data[0]).toBe(0x3fbb);
      expect(norm.data[1]).toBe(0x3fc6);
    } finally {
      await st.close();
    }
  });
});

describe('SafetensorsFile: rejecting malformed files at open', () => {
  it('rejects a file shorter than the 8-byte length prefix', async () => {
    const err = await openError(new Uint8Array([1, 2, 3]));
    expect(err.message).toMatch(/3 bytes, too short/);
  });

  it('rejects a header length above the 100 MB limit', async () => {
    const err = await openError(encodeSafetensors({}, new Uint8Array(0), { declaredLength: 200_000_000n }));
    expect(err.message).toMatch(/header length 200000000 exceeds the limit of 100000000 bytes/);
  });

  it('rejects a header length larger than the file', async () => {
    const { header, data } = layout(SAMPLE);
    const bytes = encodeSafetensors(header, data, { declaredLength: 5000n });
    const err = await openError(bytes);
    expect(err.message).toContain(`header length 5000 exceeds the ${bytes.length - 8} bytes`);
  });

  it('rejects a header length of 2^64 - 1 without overflowing', async () => {
    const err = await openError(encodeSafetensors({}, new Uint8Array(0), { declaredLength: 2n ** 64n - 1n }));
    expect(err.message).toMatch(/header length 18446744073709551615 exceeds the limit/);
  });

  it('rejects a header that is not valid JSON', async () => {
    const err = await openError(
      encodeSafetensors(undefined, new Uint8Array(0), { headerText: '{"a": {"dtype": ' }),
    );
    expect(err.message).toMatch(/header is not valid UTF-8 JSON/);
    expect(err.cause).toBeInstanceOf(SyntaxError);
  });

  it('rejects a header that is JSON but not an object', async () => {
    const err = await openError(encodeSafetensors([1, 2], new Uint8Array(0)));
    expect(err.message).toMatch(/header is not a JSON object/);
  });

  it('rejects data_offsets that reach past the end of the file', async () => {
    const err = await openError(encodeSafetensors(f32Tensor('w', 0, 16, [4]), new Uint8Array(8)));
    expect(err.tensor).toBe('w');
    expect(err.message).toContain(
      'tensor "w": data_offsets [0, 16] reach past the end of the data section (8 bytes',
    );
  });

  it('rejects a byte range that does not match shape x dtype size', async () => {
    const err = await openError(encodeSafetensors(f32Tensor('w', 0, 8, [3]), new Uint8Array(8)));
    expect(err.tensor).toBe('w');
    expect(err.message).toContain('shape [3] of F32 needs 12 bytes but data_offsets [0, 8] span 8');
  });

  it('rejects data_offsets whose end is before their begin', async () => {
    const err = await openError(encodeSafetensors(f32Tensor('w', 8, 4, [1]), new Uint8Array(8)));
    expect(err.message).toContain('tensor "w": data_offsets [8, 4] end before they begin');
  });

  it('rejects overlapping tensors, naming both', async () => {
    const header = { ...f32Tensor('first', 0, 8, [2]), ...f32Tensor('second', 4, 12, [2]) };
    const err = await openError(encodeSafetensors(header, new Uint8Array(12)));
    expect(err.message).toContain('tensors "first" [0, 8] and "second" [4, 12] overlap');
    expect(err.tensor).toBe('second');
  });

  it('rejects bytes no tensor accounts for (a gap or a tail)', async () => {
    const gap = { ...f32Tensor('x', 0, 4, [1]), ...f32Tensor('y', 8, 12, [1]) };
    expect((await openError(encodeSafetensors(gap, new Uint8Array(12)), 'gap.st')).message).toContain(
      'tensor "y" starts at 8, leaving bytes 4..8 unaccounted for',
    );
    const tail = f32Tensor('x', 0, 4, [1]);
    expect((await openError(encodeSafetensors(tail, new Uint8Array(10)), 'tail.st')).message).toContain(
      'tensors cover 4 bytes of the 10-byte data section',
    );
  });

  it('rejects an unsupported dtype, naming the tensor and the supported dtypes', async () => {
    const header = { ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } };
    const err = await openError(encodeSafetensors(header, new Uint8Array(16)));
    expect(err.tensor).toBe('ids');
    expect(err.message).toContain(
      'tensor "ids" has dtype "I64", which kmoe does not load (supported: BF16, F16, F32)',
    );
  });

  it('rejects a malformed entry: negative or fractional dimensions, missing offsets', async () => {
    const negative = { w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } };
    const e1 = await openError(encodeSafetensors(negative, new Uint8Array(4)), 'neg.st');
    expect(e1.tensor).toBe('w');
    expect(e1.message).toMatch(/tensor "w": header entry must be .*shape\.0/);
    const fractional = { w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } };
    expect((await openError(encodeSafetensors(fractional, new Uint8Array(4)), 'frac.st')).message).toMatch(
      /tensor "w": header entry must be/,
    );
    const noOffsets = { w: { dtype: 'F32', shape: [1] } };
    expect((await openError(encodeSafetensors(noOffsets, new Uint8Array(4)), 'nooff.st')).message).toMatch(
      /tensor "w": header entry must be .*data_offsets/,
    );
  });

  it('rejects __metadata__ that is not a string map', async () => {
    const header = { __metadata__: { format: 1 }, ...f32Tensor('x', 0, 4, [1]) };
    const err = await openError(encodeSafetensors(header, new Uint8Array(4)));
    expect(err.message).toContain('__metadata__ must map strings to strings');
  });

  it('rejects a demo shard cut in half: the header survives, the offsets point past the end', async () => {
    const whole = await readFile(path.join(DEMO_DIR, DEMO_SHARD_1));
    const err = await openError(whole.subarray(0, Math.floor(whole.length / 2)), DEMO_SHARD_1);
    expect(err.message).toMatch(
      /reach past the end of the data section \(6686064 bytes; the file is truncated/,
    );
    expect(err.tensor).toMatch(/^model\.layers\.[01]\./);
  });

  it('rejects a demo shard cut inside its header', async () => {
    const whole = await readFile(path.join(DEMO_DIR, DEMO_SHARD_1));
    const err = await openError(whole.subarray(0, 4000), DEMO_SHARD_1);
    expect(err.message).toContain('header length 7448 exceeds the 3992 bytes after the length field');
  });

  it('reports a missing file as a SafetensorsError with the path', async () => {
    const file = path.join(dir, 'nope.safetensors');
    await expect(SafetensorsFile.open(file)).rejects.toThrow(`${file}: cannot open`);
  });
});

describe('SafetensorsFile: errors after open', () => {
  it('names the file and tensor when asked for a tensor it does not hold', async () => {
    const file = path.join(dir, 'ok.safetensors');
    await writeSafetensors(file, SAMPLE);
    const st = await SafetensorsFile.open(file);
    try {
      expect(st.has('a.f32')).toBe(true);
      expect(st.has('zzz')).toBe(false);
      expect(() => st.info('zzz')).toThrow(`${file}: no tensor named "zzz" (the file holds 3)`);
      await expect(st.read('zzz')).rejects.toBeInstanceOf(SafetensorsError);
    } finally {
      await st.close();
    }
  });

  it('fails a read, instead of returning garbage, when the file is truncated while open', async () => {
    const file = path.join(dir, 'shrinks.safetensors');
    await writeSafetensors(file, SAMPLE);
    const st = await SafetensorsFile.open(file);
    try {
      await truncate(file, st.headerBytes + 30);
      const err = await st.read('c.f16').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SafetensorsError);
      expect((err as SafetensorsError).message).toContain('file ended after 0 of 8 bytes');
      expect((err as SafetensorsError).tensor).toBe('c.f16');
      // The tensor that still fits is read correctly.
      expect(Array.from((await st.read('a.f32')).data)).toEqual(Array.from(F32_VALUES));
    } finally {
      await st.close();
    }
  });

  it('refuses to read after close', async () => {
    const file = path.join(dir, 'ok.safetensors');
    await writeSafetensors(file, SAMPLE);
    const st = await SafetensorsFile.open(file);
    await st.close();
    await expect(st.read('a.f32')).rejects.toThrow('cannot read "a.f32", the file was closed');
  });
});
