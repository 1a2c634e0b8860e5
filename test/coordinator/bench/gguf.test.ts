// The GGUF writer: the demo model written as bf16 must equal, tensor by tensor and byte for byte,
// the GGUF that llama.cpp's own converter made of the same weights (shared/models/tiny-mixtral-gguf);
// f32 and Q8_0 outputs must hold the same values (exactly, or within Q8_0's rounding); the format
// round-trips every metadata type; non-llama checkpoints are refused.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpointToGguf, quantizeQ8_0 } from '../../../coordinator/bench/gguf/checkpoint-to-gguf.js';
import { GgufError } from '../../../coordinator/bench/gguf/errors.js';
import {
  GgmlType,
  type GgufHeader,
  type GgufValue,
  GgufValueType,
  gguf,
  readGgufHeader,
  readGgufTensorBytes,
  writeGguf,
} from '../../../coordinator/bench/gguf/gguf-format.js';
import { bf16ToF32, f16ToF32 } from '../../../shared/dtype.js';
import { type GgufDigest, ggufDigest } from '../../helpers/gguf-digest.js';
import { MODEL_DIR, ROOT } from '../../helpers/paths.js';

// What llama.cpp's own converter wrote for the demo model, reduced to metadata, tensor layout and
// per-tensor SHA-256 (test/fixtures/gguf/make-digest.ts made it from the 30 MB file).
const CONVERTER = JSON.parse(
  readFileSync(path.join(ROOT, 'test/fixtures/gguf/digest.json'), 'utf8'),
) as GgufDigest;

const json = (v: unknown) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? `${x}n` : x));

let dir: string;
let bf16File: string;
let bf16: GgufHeader;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kmoe-gguf-'));
  bf16File = path.join(dir, 'demo-bf16.gguf');
  const r = await checkpointToGguf(MODEL_DIR, bf16File, { outType: 'bf16' });
  expect(r.vocab).toBe('tokenizer.json');
  bf16 = await readGgufHeader(bf16File);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('checkpointToGguf', () => {
  it("writes the demo model as bf16 exactly as llama.cpp's converter does: metadata, tensor names, shapes, types and bytes", async () => {
    const ours = await ggufDigest(bf16, (t) => readGgufTensorBytes(bf16File, bf16, t), createHash);
    expect(ours.version).toBe(CONVERTER.version);
    expect(Object.keys(ours.metadata)).toEqual(Object.keys(CONVERTER.metadata));
    for (const [k, v] of Object.entries(CONVERTER.metadata)) expect(ours.metadata[k], k).toBe(v);
    expect(Object.keys(ours.tensors).sort()).toEqual(Object.keys(CONVERTER.tensors).sort());
    for (const [name, t] of Object.entries(CONVERTER.tensors)) expect(ours.tensors[name], name).toEqual(t);
  });

  it('lays the demo model out as llama.cpp names and shapes it (ggml order: innermost first)', () => {
    const byName = new Map(bf16.tensors.map((t) => [t.name, t]));
    expect(bf16.tensors).toHaveLength(3 + 4 * 10);
    expect(byName.get('token_embd.weight')?.dims).toEqual([256, 4096]);
    expect(byName.get('blk.3.attn_q.weight')?.dims).toEqual([256, 256]);
    expect(byName.get('blk.3.attn_k.weight')?.dims).toEqual([256, 128]);
    expect(byName.get('blk.0.ffn_gate_exps.weight')?.dims).toEqual([256, 512, 8]);
    expect(byName.get('blk.0.ffn_down_exps.weight')?.dims).toEqual([512, 256, 8]);
    expect(byName.get('blk.0.ffn_gate_inp.weight')?.type).toBe(GgmlType.F32);
    expect(byName.get('output_norm.weight')?.type).toBe(GgmlType.F32);
    expect(byName.get('output.weight')?.type).toBe(GgmlType.BF16);
    for (const t of bf16.tensors) expect(t.offset % bf16.alignment).toBe(0);
    expect(bf16.metadata.get('llama.expert_used_count')?.value).toBe(2);
    expect(bf16.metadata.get('general.file_type')?.value).toBe(32);
  });

  it('writes f32: every tensor holds exactly the bf16 values widened', async () => {
    const file = path.join(dir, 'demo-f32.gguf');
    await checkpointToGguf(MODEL_DIR, file, { outType: 'f32' });
    const f32 = await readGgufHeader(file);
    expect(f32.metadata.get('general.file_type')?.value).toBe(0);
    const b = new Map(bf16.tensors.map((t) => [t.name, t]));
    for (const t of f32.tensors) {
      expect(t.type).toBe(GgmlType.F32);
      const src = b.get(t.name)!;
      expect(t.dims).toEqual(src.dims);
      const wide = await readGgufTensorBytes(file, f32, t);
      const narrow = await readGgufTensorBytes(bf16File, bf16, src);
      const expected =
        src.type === GgmlType.BF16
          ? new Uint8Array(
              bf16ToF32(new Uint16Array(narrow.buffer, narrow.byteOffset, narrow.byteLength / 2)).buffer,
            )
          : narrow;
      expect(Buffer.from(wide).equals(Buffer.from(expected)), t.name).toBe(true);
    }
  });

  it('writes q8_0: 2-D weights quantised per block of 32 to within half a step, norms and router kept f32', async () => {
    const file = path.join(dir, 'demo-q8.gguf');
    await checkpointToGguf(MODEL_DIR, file, { outType: 'q8_0' });
    const q8 = await readGgufHeader(file);
    expect(q8.metadata.get('general.file_type')?.value).toBe(7);
    const types = new Map(q8.tensors.map((t) => [t.name, t.type]));
    expect(types.get('blk.1.ffn_up_exps.weight')).toBe(GgmlType.Q8_0);
    expect(types.get('token_embd.weight')).toBe(GgmlType.Q8_0);
    expect(types.get('blk.1.ffn_gate_inp.weight')).toBe(GgmlType.F32);
    expect(types.get('blk.1.attn_norm.weight')).toBe(GgmlType.F32);
    const t = q8.tensors.find((x) => x.name === 'blk.2.attn_v.weight')!;
    const src = bf16.tensors.find((x) => x.name === t.name)!;
    const q = await readGgufTensorBytes(file, q8, t);
    expect(q.byteLength).toBe((256 * 128 * 34) / 32);
    const raw = await readGgufTensorBytes(bf16File, bf16, src);
    const x = bf16ToF32(new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2));
    const view = new DataView(q.buffer, q.byteOffset, q.byteLength);
    for (let b = 0; b < x.length / 32; b++) {
      const d = f16ToF32(Uint16Array.of(view.getUint16(b * 34, true)))[0]!;
      for (let i = 0; i < 32; i++) {
        const v = view.getInt8(b * 34 + 2 + i) * d;
        // half a step, plus the fp16 rounding of the scale applied to up to 127 steps
        expect(Math.abs(v - x[b * 32 + i]!)).toBeLessThanOrEqual(d / 2 + 127 * d * 2 ** -11 + 1e-9);
      }
    }
  });

  it('quantises a Q8_0 block as gguf-py does: d = max|x|/127 as fp16, q rounded half away from zero', () => {
    const x = new Float32Array(32);
    x[0] = -2;
    x[1] = 1;
    x[2] = 0.5;
    x[3] = 2 / 127 / 2; // exactly half a step: rounds away from zero
    x[4] = -2 / 127 / 2;
    const out = quantizeQ8_0(x);
    expect(out.byteLength).toBe(34);
    const view = new DataView(out.buffer);
    const d = f16ToF32(Uint16Array.of(view.getUint16(0, true)))[0]!;
    expect(Math.abs(d - 2 / 127)).toBeLessThan(2 ** -11 * (2 / 127));
    expect([0, 1, 2, 3, 4, 5].map((i) => view.getInt8(2 + i))).toEqual([-127, 64, 32, 1, -1, 0]);
    expect([...quantizeQ8_0(new Float32Array(32))].every((b) => b === 0)).toBe(true);
    expect(() => quantizeQ8_0(new Float32Array(31))).toThrow(GgufError);
  });

  it('writes a placeholder vocabulary with byte tokens when the checkpoint has no tokenizer.json', async () => {
    const staged = path.join(dir, 'no-tokenizer');
    await mkdir(staged);
    for (const f of await readdir(MODEL_DIR)) {
      if (f !== 'tokenizer.json') await symlink(path.join(MODEL_DIR, f), path.join(staged, f));
    }
    const file = path.join(dir, 'placeholder.gguf');
    const r = await checkpointToGguf(staged, file, { outType: 'bf16' });
    expect(r.vocab).toBe('placeholder');
    const h = await readGgufHeader(file);
    const tokens = h.metadata.get('tokenizer.ggml.tokens')!;
    if (tokens.type !== GgufValueType.ARRAY) throw new Error('tokenizer.ggml.tokens is not an array');
    expect(tokens.value).toHaveLength(4096);
    expect(tokens.value[13]).toBe('<0x0A>');
    expect(h.metadata.get('general.name')?.value).toBe('no-tokenizer');
  });

  it.each(['tiny-qwen2-moe', 'tiny-olmoe', 'tiny-deepseek-v3'])(
    'refuses %s: not the llama architecture with experts',
    async (name) => {
      await expect(
        checkpointToGguf(path.join(ROOT, 'models', name), path.join(dir, `${name}.gguf`), { outType: 'f32' }),
      ).rejects.toThrow(GgufError);
      expect(existsSync(path.join(dir, `${name}.gguf`))).toBe(false);
    },
  );
});

describe('GGUF format', () => {
  it('round-trips every metadata value type, a custom alignment and tensor bytes', async () => {
    const metadata = new Map<string, GgufValue>([
      ['general.alignment', gguf.u32(64)],
      ['u8', { type: GgufValueType.UINT8, value: 255 }],
      ['i8', { type: GgufValueType.INT8, value: -128 }],
      ['u16', { type: GgufValueType.UINT16, value: 65535 }],
      ['i16', { type: GgufValueType.INT16, value: -32768 }],
      ['i32', gguf.i32(-5)],
      ['f32', gguf.f32(0.5)],
      ['f64', { type: GgufValueType.FLOAT64, value: Math.PI }],
      ['u64', { type: GgufValueType.UINT64, value: 2n ** 63n }],
      ['i64', { type: GgufValueType.INT64, value: -(2n ** 40n) }],
      ['bool', gguf.bool(true)],
      ['str', gguf.str('héllo ▁')],
      ['strs', gguf.strings(['a', '', 'ü'])],
      ['f32s', gguf.f32s([1.5, -2])],
    ]);
    const a = new Float32Array([1, 2, 3]);
    const b = new Uint16Array([7, 8, 9, 10]);
    const file = path.join(dir, 'roundtrip.gguf');
    await writeGguf(file, metadata, [
      {
        name: 'a',
        dims: [3],
        type: GgmlType.F32,
        data: async function* () {
          yield new Uint8Array(a.buffer);
        },
      },
      {
        name: 'b',
        dims: [2, 2],
        type: GgmlType.BF16,
        data: async function* () {
          yield new Uint8Array(b.buffer, 0, 4);
          yield new Uint8Array(b.buffer, 4, 4);
        },
      },
    ]);
    const h = await readGgufHeader(file);
    expect(h.alignment).toBe(64);
    expect(h.dataOffset % 64).toBe(0);
    expect(json([...h.metadata])).toBe(json([...metadata]));
    expect(h.tensors.map((t) => [t.name, t.dims, t.offset, t.byteLength])).toEqual([
      ['a', [3], 0, 12],
      ['b', [2, 2], 64, 8],
    ]);
    expect(new Float32Array((await readGgufTensorBytes(file, h, h.tensors[0]!)).slice().buffer)).toEqual(a);
    expect(new Uint16Array((await readGgufTensorBytes(file, h, h.tensors[1]!)).slice().buffer)).toEqual(b);
  });

  it('refuses a tensor whose producer yields the wrong number of bytes', async () => {
    await expect(
      writeGguf(path.join(dir, 'bad.gguf'), new Map(), [
        {
          name: 'x',
          dims: [4],
          type: GgmlType.F32,
          data: async function* () {
            yield new Uint8Array(12);
          },
        },
      ]),
    ).rejects.toThrow(GgufError);
  });
});
