// A synthetic checkpoint must load through the same code as a real one: names, shapes, dtypes,
// shard index and values (regenerated from the seed) all checked.

import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SynthError } from '../../../coordinator/scale/errors.js';
import { presetConfig } from '../../../coordinator/scale/presets.js';
import { SYNTH_STD, synthValues } from '../../../coordinator/scale/prng.js';
import { DEFAULT_SHARD_BYTES } from '../../../coordinator/scale/shard-layout.js';
import { writeSyntheticCheckpoint } from '../../../coordinator/scale/synth.js';
import { bf16ToF32 } from '../../../shared/dtype.js';
import { assertRunnable, Checkpoint, INDEX_FILE_NAME } from '../../../shared/model/checkpoint.js';
import { KmoeTokenizer } from '../../../shared/model/tokenizer.js';
import { MODEL_DIR } from '../../helpers/paths.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kmoe-synth-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A small Mixtral-shaped config: every role present, several shards at a 64 KB budget. */
function smallConfig(vocab: number): Record<string, unknown> {
  return {
    ...presetConfig('mixtral-8x7b'),
    hidden_size: 64,
    intermediate_size: 96,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    num_local_experts: 4,
    vocab_size: vocab,
    max_position_embeddings: 256,
  };
}

async function withCheckpoint<T>(at: string, fn: (c: Checkpoint) => Promise<T>): Promise<T> {
  const c = await Checkpoint.open(at);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

describe('kmoe synth', () => {
  it('writes a sharded bf16 checkpoint the loader reads back tensor for tensor', async () => {
    const out = path.join(dir, 'small');
    const progress: number[] = [];
    const result = await writeSyntheticCheckpoint({
      config: smallConfig(512),
      outDir: out,
      seed: 7,
      shardBytes: 64_000,
      onProgress: (p) => progress.push(p.bytesWritten),
    });
    expect(result.tokenizer).toEqual({ kind: 'minimal' });
    expect(result.layout.shards.length).toBeGreaterThan(2);
    // Progress is monotonic and ends at the total.
    expect(progress.at(-1)).toBe(result.layout.totalSize);
    expect(progress.every((b, i) => i === 0 || b > progress[i - 1]!)).toBe(true);

    const files = (await readdir(out)).sort();
    const n = result.layout.shards.length;
    const pad = (i: number) => String(i).padStart(5, '0');
    const shardNames = Array.from({ length: n }, (_, i) => `model-${pad(i + 1)}-of-${pad(n)}.safetensors`);
    expect(files).toEqual(
      [
        'config.json',
        'generation_config.json',
        'kmoe_synth.json',
        INDEX_FILE_NAME,
        ...shardNames,
        'tokenizer.json',
        'tokenizer_config.json',
      ].sort(),
    );
    // Marked synthetic but not sparse: the engine and the workers run it.
    expect(JSON.parse(await readFile(path.join(out, 'kmoe_synth.json'), 'utf8'))).toEqual({
      synthetic: true,
      sparse: false,
      seed: 7,
    });
    await expect(assertRunnable(out)).resolves.toBeUndefined();

    const index = JSON.parse(await readFile(path.join(out, INDEX_FILE_NAME), 'utf8')) as {
      metadata: { total_size: number };
      weight_map: Record<string, string>;
    };
    await withCheckpoint(out, async (ckpt) => {
      ckpt.validateArchitecture();
      const specs = ckpt.family.tensorSpecs(ckpt.config);
      expect(ckpt.names()).toEqual(specs.map((s) => s.name).sort());
      expect(Object.keys(index.weight_map)).toEqual(ckpt.names());
      let total = 0;
      for (const spec of specs) {
        const info = ckpt.info(spec.name);
        expect(info.dtype).toBe('BF16');
        expect(info.shape).toEqual(spec.shape);
        expect(path.basename(info.file)).toBe(index.weight_map[spec.name]);
        total += info.byteLength;
        const stored = await ckpt.read(spec.name);
        const count = spec.shape.reduce((a, b) => a * b, 1);
        if (spec.shape.length === 1) expect(stored.data.every((v) => v === 0x3f80)).toBe(true);
        else
          expect(
            Buffer.from(stored.data.buffer).equals(Buffer.from(synthValues(7, spec.name, count).buffer)),
          ).toBe(true);
      }
      expect(index.metadata.total_size).toBe(total);
      // No shard passes the budget unless it holds a single tensor.
      for (const s of result.layout.shards) {
        if (s.tensors.length > 1) expect(s.dataBytes).toBeLessThanOrEqual(64_000);
        expect((await stat(path.join(out, s.fileName))).size).toBe(s.fileBytes);
      }
    });

    // The minimal tokenizer loads, has exactly vocab_size ids and round-trips text.
    const tok = await KmoeTokenizer.load(out);
    expect(tok.vocabSize).toBe(512);
    const ids = tok.encode('def f(x): return x + 1');
    expect(ids[0]).toBe(1);
    expect(tok.decode(ids)).toBe('def f(x): return x + 1');
  });

  it('gives each tensor its own seeded stream with the std of initializer_range', () => {
    const a = bf16ToF32(synthValues(1, 'model.layers.0.self_attn.q_proj.weight', 1 << 16));
    const b = synthValues(2, 'model.layers.0.self_attn.q_proj.weight', 1 << 16);
    const c = synthValues(1, 'model.layers.0.self_attn.k_proj.weight', 1 << 16);
    const again = synthValues(1, 'model.layers.0.self_attn.q_proj.weight', 1 << 16);
    expect(Buffer.from(bf16ToF32(again).buffer).equals(Buffer.from(a.buffer))).toBe(true);
    expect(
      Buffer.from(b.buffer).equals(
        Buffer.from(synthValues(1, 'model.layers.0.self_attn.q_proj.weight', 1 << 16).buffer),
      ),
    ).toBe(false);
    expect(Buffer.from(c.buffer).equals(Buffer.from(b.buffer))).toBe(false);
    let sum = 0;
    let sq = 0;
    for (const v of a) {
      sum += v;
      sq += v * v;
    }
    const mean = sum / a.length;
    const std = Math.sqrt(sq / a.length - mean * mean);
    // n = 65536 uniform samples: the std estimate's relative error is ~0.3% (1 sigma), the mean's
    // ~0.02/256 = 8e-5; bf16 truncation biases values toward zero by < 0.4% of each.
    expect(Math.abs(mean)).toBeLessThan(4e-4);
    expect(Math.abs(std / SYNTH_STD - 1)).toBeLessThan(0.02);
    expect(Math.max(...a)).toBeLessThanOrEqual(SYNTH_STD * Math.sqrt(3));
  });

  it('copies the demo tokenizer only when its vocabulary has exactly vocab_size ids', async () => {
    const out = path.join(dir, 'demo-vocab');
    const result = await writeSyntheticCheckpoint({
      config: { ...smallConfig(4096), num_hidden_layers: 1 },
      outDir: out,
      seed: 1,
      tokenizerSource: { dir: MODEL_DIR },
    });
    expect(result.tokenizer).toEqual({ kind: 'copied', from: MODEL_DIR });
    expect(await readFile(path.join(out, 'tokenizer.json'), 'utf8')).toBe(
      await readFile(path.join(MODEL_DIR, 'tokenizer.json'), 'utf8'),
    );
    // One shard under the 5 GB default.
    expect(result.layout.shards.map((s) => s.fileName)).toEqual(['model-00001-of-00001.safetensors']);
  });

  it('refuses a non-empty output directory and an invalid config before writing weights', async () => {
    const out = path.join(dir, 'x');
    await writeSyntheticCheckpoint({
      config: { ...smallConfig(512), num_hidden_layers: 1 },
      outDir: out,
      seed: 0,
    });
    await expect(
      writeSyntheticCheckpoint({ config: smallConfig(512), outDir: out, seed: 0 }),
    ).rejects.toThrow(SynthError);
    const bad = path.join(dir, 'bad');
    await expect(
      writeSyntheticCheckpoint({
        config: { ...smallConfig(512), num_key_value_heads: 3 },
        outDir: bad,
        seed: 0,
      }),
    ).rejects.toThrow(/num_key_value_heads/);
    expect(await readdir(bad)).toEqual(['config.json']);
  });

  it('lays out Mixtral 8x22B with one layer exactly (sparse: headers, index, norms; matrices as holes)', async () => {
    const out = path.join(dir, '8x22b');
    const result = await writeSyntheticCheckpoint({
      config: presetConfig('mixtral-8x22b', 1),
      outDir: out,
      seed: 0,
      sparse: true,
    });
    // Hand-computed, bf16 (2 bytes/param):
    //   embed_tokens, lm_head 32768 x 6144 = 201,326,592 params = 402,653,184 B each
    //   q_proj, o_proj 6144 x 6144 = 37,748,736 = 75,497,472 B; k_proj, v_proj 1024 x 6144 = 12,582,912 B
    //   gate 8 x 6144 = 98,304 B; norms 6144 = 12,288 B (x3)
    //   expert matrices 16384 x 6144 = 100,663,296 params = 201,326,592 B, 24 of them
    //   total = 2 x 402,653,184 + 2 x 75,497,472 + 2 x 12,582,912 + 98,304 + 3 x 12,288
    //         + 24 x 201,326,592 = 5,813,440,512 B (the "about 5.8 GB per layer")
    // Greedy 5 GB shards in state-dict order: embed, q, k, v, o, gate (578,912,256 B) + 21 expert
    // matrices = 4,806,770,688 B; the 22nd would pass 5e9. Shard 2: 3 matrices, 2 layer norms,
    // final norm, lm_head = 1,006,669,824 B.
    expect(result.layout.totalSize).toBe(5_813_440_512);
    expect(result.layout.shards.map((s) => [s.fileName, s.dataBytes, s.tensors.length])).toEqual([
      ['model-00001-of-00002.safetensors', 4_806_770_688, 6 + 21],
      ['model-00002-of-00002.safetensors', 1_006_669_824, 3 + 2 + 2],
    ]);
    expect(DEFAULT_SHARD_BYTES).toBe(5_000_000_000);
    // Only the norms were written.
    expect(result.bytesWritten).toBe(3 * 12_288);
    await withCheckpoint(out, async (ckpt) => {
      ckpt.validateArchitecture();
      expect(ckpt.config.hiddenSize).toBe(6144);
      expect(ckpt.config.numLayers).toBe(1);
      expect(ckpt.names()).toHaveLength(3 + 7 + 8 * 3);
      expect(ckpt.info('model.layers.0.block_sparse_moe.experts.7.w2.weight')).toMatchObject({
        dtype: 'BF16',
        shape: [6144, 16384],
        byteLength: 201_326_592,
      });
      const norm = await ckpt.read('model.layers.0.post_attention_layernorm.weight');
      expect(norm.data.every((v) => v === 0x3f80)).toBe(true);
    });
    const tok = await KmoeTokenizer.load(out);
    expect(tok.vocabSize).toBe(32768);
  });
});
