import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { f32ToF16 } from '../../../shared/dtype.js';
import { modelFamily } from '../../../shared/families/registry.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import { parseModelConfig } from '../../../shared/model/config.js';
import { CheckpointError, SafetensorsError } from '../../../shared/model/errors.js';
import {
  bytesOf,
  copyDemoFile,
  DEMO_DIR,
  DEMO_INDEX,
  DEMO_SHARD_1,
  DEMO_SHARD_2,
  demoJson,
  headerBytesOf,
  makeTempDir,
  type RawTensor,
  stageDemo,
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

async function withCheckpoint<T>(at: string, fn: (ckpt: Checkpoint) => Promise<T>): Promise<T> {
  const ckpt = await Checkpoint.open(at);
  try {
    return await fn(ckpt);
  } finally {
    await ckpt.close();
  }
}

async function openError(at: string): Promise<CheckpointError> {
  const err = await Checkpoint.open(at).then(
    async (c) => {
      await c.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CheckpointError);
  return err as CheckpointError;
}

async function editedIndex(edit: (weightMap: Record<string, string>) => void): Promise<string> {
  const index = await demoJson(DEMO_INDEX);
  edit(index['weight_map'] as Record<string, string>);
  return JSON.stringify(index, null, 2);
}

async function editedConfig(changes: Record<string, unknown>): Promise<string> {
  return JSON.stringify({ ...(await demoJson('config.json')), ...changes }, null, 2);
}

const EXPERT_BYTES = 512 * 256 * 2; // one bf16 expert matrix of the demo model

describe('Checkpoint: the demo model (sharded bf16)', () => {
  it('indexes every tensor with its dtype, shape and shard', async () => {
    await withCheckpoint(DEMO_DIR, async (ckpt) => {
      expect(ckpt.dir).toBe(DEMO_DIR);
      expect(ckpt.config.numLayers).toBe(4);
      expect(ckpt.config.numExperts).toBe(8);
      expect(ckpt.names()).toHaveLength(127);
      expect(ckpt.has('model.norm.weight')).toBe(true);
      expect(ckpt.has('model.layers.4.input_layernorm.weight')).toBe(false);
      expect(ckpt.info('model.layers.1.block_sparse_moe.experts.3.w2.weight')).toEqual({
        name: 'model.layers.1.block_sparse_moe.experts.3.w2.weight',
        dtype: 'BF16',
        shape: [256, 512],
        file: path.join(DEMO_DIR, DEMO_SHARD_1),
        byteLength: EXPERT_BYTES,
      });
      expect(ckpt.info('lm_head.weight').file).toBe(path.join(DEMO_DIR, DEMO_SHARD_2));
    });
  });

  it('reads tensors as fp32 with the values numpy reads from the same bytes', async () => {
    // bf16 -> fp32 is exact, so the comparison is exact up to the fp64 summation order of the sum.
    await withCheckpoint(DEMO_DIR, async (ckpt) => {
      const norm = await ckpt.readF32('model.norm.weight');
      expect(norm.dtype).toBe('float32');
      expect(norm.shape).toEqual([256]);
      expect(Array.from(norm.data.subarray(0, 4))).toEqual([1.4609375, 1.546875, 1.5546875, 1.4921875]);
      expect(norm.data[255]).toBe(1.546875);
      expect(sum(norm.data)).toBe(382.2421875);

      const gate = await ckpt.readF32('model.layers.1.block_sparse_moe.gate.weight');
      expect(gate.shape).toEqual([8, 256]);
      expect(Array.from(gate.data.subarray(0, 4))).toEqual([
        -0.061767578125, -0.007659912109375, -0.02734375, 0.048583984375,
      ]);
      expect(gate.data[8 * 256 - 1]).toBe(-0.01458740234375);
      expect(sum(gate.data)).toBeCloseTo(-0.2302248477935791, 12);

      const w2 = await ckpt.readF32(modelFamily('mixtral').tensorNames.expert(3, 7).w2, [256, 512]);
      expect(Array.from(w2.data.subarray(0, 4))).toEqual([
        0.0146484375, 0.06396484375, 0.006378173828125, 0.04296875,
      ]);
      expect(sum(w2.data)).toBeCloseTo(12.982089594937861, 10);
    });
  });

  it('reads the raw bf16 tensor too', async () => {
    await withCheckpoint(DEMO_DIR, async (ckpt) => {
      const norm = await ckpt.read('model.norm.weight');
      expect(norm.dtype).toBe('bfloat16');
      expect(norm.data[0]).toBe(0x3fbb);
    });
  });

  it('validates against the architecture table', async () => {
    await withCheckpoint(DEMO_DIR, async (ckpt) => {
      expect(ckpt.validateArchitecture()).toBeUndefined();
    });
  });

  it('reads lazily: only headers at open, then only the tensors asked for (experts 2-7 never touched)', async () => {
    const headers =
      (await headerBytesOf(path.join(DEMO_DIR, DEMO_SHARD_1))) +
      (await headerBytesOf(path.join(DEMO_DIR, DEMO_SHARD_2)));
    expect(headers).toBe(7456 + 7768);
    await withCheckpoint(DEMO_DIR, async (ckpt) => {
      expect(ckpt.bytesRead).toBe(headers);
      const names = ckpt.family.tensorNames;
      let expected = headers;
      for (let l = 0; l < ckpt.config.numLayers; l++) {
        for (const e of [0, 1]) {
          for (const name of Object.values(names.expert(l, e))) {
            const t = await ckpt.readF32(name);
            expect(t.shape).toEqual(name.endsWith('w2.weight') ? [256, 512] : [512, 256]);
            expected += EXPERT_BYTES;
          }
        }
      }
      expect(ckpt.bytesRead).toBe(expected);
      expect(ckpt.bytesRead).toBe(headers + 4 * 2 * 3 * EXPERT_BYTES);
    });
  });

  it('names tensor, file and both shapes when the caller expects another shape', async () => {
    await withCheckpoint(DEMO_DIR, async (ckpt) => {
      const before = ckpt.bytesRead;
      const err = await ckpt.readF32('model.norm.weight', [512]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CheckpointError);
      expect((err as CheckpointError).message).toBe(
        `tensor "model.norm.weight" in ${path.join(DEMO_DIR, DEMO_SHARD_2)} has shape [256], but the caller expects [512]`,
      );
      expect((err as CheckpointError).tensor).toBe('model.norm.weight');
      // The check happens before any data is read.
      expect(ckpt.bytesRead).toBe(before);
    });
  });

  it('names the directory and tensor for an unknown tensor', async () => {
    await withCheckpoint(DEMO_DIR, async (ckpt) => {
      expect(() => ckpt.info('model.layers.9.input_layernorm.weight')).toThrow(
        `${DEMO_DIR}: the checkpoint has no tensor "model.layers.9.input_layernorm.weight"`,
      );
      await expect(ckpt.readF32('nope')).rejects.toBeInstanceOf(CheckpointError);
    });
  });
});

describe('Checkpoint: fingerprint', () => {
  it('is a sha256 hex string, stable across opens', async () => {
    const a = await withCheckpoint(DEMO_DIR, async (c) => c.fingerprint());
    const b = await withCheckpoint(DEMO_DIR, async (c) => c.fingerprint());
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(b).toBe(a);
  });

  it('ignores key order and formatting of config.json', async () => {
    const original = await withCheckpoint(DEMO_DIR, async (c) => c.fingerprint());
    const cfg = await demoJson('config.json');
    const reversed = Object.fromEntries(Object.entries(cfg).reverse());
    await stageDemo(dir, { 'config.json': JSON.stringify(reversed) });
    expect(await withCheckpoint(dir, async (c) => c.fingerprint())).toBe(original);
  });

  it('changes when config.json changes, even in a field kmoe does not use', async () => {
    const original = await withCheckpoint(DEMO_DIR, async (c) => c.fingerprint());
    await stageDemo(dir, { 'config.json': await editedConfig({ router_aux_loss_coef: 0.01 }) });
    const changed = await withCheckpoint(dir, async (c) => c.fingerprint());
    expect(changed).toMatch(/^[0-9a-f]{64}$/);
    expect(changed).not.toBe(original);
  });

  it('changes when the set of tensors changes', async () => {
    const original = await withCheckpoint(DEMO_DIR, async (c) => c.fingerprint());
    await stageDemo(dir, {
      [DEMO_INDEX]: await editedIndex((m) => {
        delete m['lm_head.weight'];
      }),
    });
    expect(await withCheckpoint(dir, async (c) => c.fingerprint())).not.toBe(original);
  });
});

describe('Checkpoint: broken shard indexes', () => {
  it('names index, tensor and file when the index points at a missing shard', async () => {
    await stageDemo(dir, {
      [DEMO_INDEX]: await editedIndex((m) => {
        m['model.norm.weight'] = 'model-00003-of-00003.safetensors';
      }),
    });
    const err = await openError(dir);
    expect(err.message).toBe(
      `${path.join(dir, DEMO_INDEX)}: maps 1 tensors (model.norm.weight) to ` +
        `${path.join(dir, 'model-00003-of-00003.safetensors')}, which does not exist`,
    );
    expect(err.file).toBe(path.join(dir, 'model-00003-of-00003.safetensors'));
    expect(err.tensor).toBe('model.norm.weight');
  });

  it('names index, tensor and file when a shard lacks a tensor the index puts there', async () => {
    await stageDemo(dir, {
      [DEMO_INDEX]: await editedIndex((m) => {
        m['model.norm.weight'] = DEMO_SHARD_1;
      }),
    });
    const err = await openError(dir);
    expect(err.message).toBe(
      `${path.join(dir, DEMO_INDEX)}: maps 1 tensors to ${path.join(dir, DEMO_SHARD_1)} ` +
        'that the file does not contain: model.norm.weight',
    );
    expect(err.tensor).toBe('model.norm.weight');
  });

  it('refuses shard paths outside the checkpoint directory', async () => {
    await stageDemo(dir, {
      [DEMO_INDEX]: await editedIndex((m) => {
        m['model.norm.weight'] = `../other/${DEMO_SHARD_2}`;
      }),
    });
    const err = await openError(dir);
    expect(err.message).toContain(`tensor "model.norm.weight" maps to "../other/${DEMO_SHARD_2}"`);
  });

  it('rejects an index without a weight_map', async () => {
    await stageDemo(dir, { [DEMO_INDEX]: JSON.stringify({ metadata: {} }) });
    expect((await openError(dir)).message).toContain('expected {"weight_map"');
  });

  it('passes on the SafetensorsError of a truncated shard', async () => {
    const whole = await readFile(path.join(DEMO_DIR, DEMO_SHARD_2));
    await stageDemo(dir, { [DEMO_SHARD_2]: whole.subarray(0, Math.floor(whole.length / 2)) });
    const err = await Checkpoint.open(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as SafetensorsError).file).toBe(path.join(dir, DEMO_SHARD_2));
    expect((err as SafetensorsError).message).toMatch(/reach past the end of the data section/);
  });

  it('fails with a clear error when there are no weights at all', async () => {
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(await demoJson('config.json')));
    const err = await openError(dir);
    expect(err.message).toBe(`${dir}: no model.safetensors and no model.safetensors.index.json`);
  });
});

describe('Checkpoint: architecture checks', () => {
  it('refuses a pre-quantized checkpoint by its quantization_config, naming the method', async () => {
    await stageDemo(dir, {
      'config.json': await editedConfig({
        quantization_config: { quant_method: 'fp8', fmt: 'e4m3', weight_block_size: [128, 128] },
      }),
    });
    const err = await openError(dir);
    expect(err.message).toContain('quantization_config (quant_method "fp8")');
    expect(err.hint).toContain('kmoe plan sizes this config');
  });

  it('lists the tensors missing from the checkpoint', async () => {
    await stageDemo(dir, {
      [DEMO_INDEX]: await editedIndex((m) => {
        delete m['model.layers.2.block_sparse_moe.experts.5.w3.weight'];
        delete m['model.embed_tokens.weight'];
      }),
    });
    await withCheckpoint(dir, async (ckpt) => {
      expect(() => ckpt.validateArchitecture()).toThrow(
        'missing 2 tensors: model.embed_tokens.weight, model.layers.2.block_sparse_moe.experts.5.w3.weight',
      );
    });
  });

  it('summarises long lists: a config with one layer more than the weights', async () => {
    await stageDemo(dir, { 'config.json': await editedConfig({ num_hidden_layers: 5 }) });
    await withCheckpoint(dir, async (ckpt) => {
      const err = (() => {
        try {
          ckpt.validateArchitecture();
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(CheckpointError);
      const message = (err as CheckpointError).message;
      expect(message).toContain('missing 31 tensors: model.layers.4.input_layernorm.weight, ');
      expect(message).toContain('(and 11 more)');
    });
  });

  it('rejects shapes that disagree with config.json, at read and in validateArchitecture', async () => {
    await stageDemo(dir, { 'config.json': await editedConfig({ intermediate_size: 384 }) });
    await withCheckpoint(dir, async (ckpt) => {
      const name = 'model.layers.0.block_sparse_moe.experts.0.w1.weight';
      await expect(ckpt.readF32(name)).rejects.toThrow(
        `tensor "${name}" in ${path.join(dir, DEMO_SHARD_1)} has shape [512, 256], but the mixtral ` +
          'architecture expects for this config.json [384, 256]',
      );
      expect(() => ckpt.validateArchitecture()).toThrow(
        `96 tensors of the wrong shape: ${name} in ${path.join(dir, DEMO_SHARD_1)} is [512, 256], expected [384, 256]`,
      );
      // Tensors whose shape does not depend on the changed field still load.
      expect((await ckpt.readF32('model.norm.weight')).shape).toEqual([256]);
    });
  });
});

describe('Checkpoint: a single-file checkpoint with tied embeddings', () => {
  const config = {
    architectures: ['MixtralForCausalLM'],
    model_type: 'mixtral',
    hidden_size: 8,
    intermediate_size: 4,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    num_local_experts: 2,
    num_experts_per_tok: 1,
    vocab_size: 16,
    rms_norm_eps: 1e-6,
    max_position_embeddings: 64,
    bos_token_id: 1,
    eos_token_id: 2,
    tie_word_embeddings: true,
    torch_dtype: 'float16',
  };
  // Multiples of 1/4 in [-0.5, 1]: exact in f16 and f32.
  const valueAt = (i: number): number => (i % 7) * 0.25 - 0.5;

  async function writeTiny(): Promise<void> {
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
    const parsed = parseModelConfig(config, 'tiny config');
    const tensors: RawTensor[] = modelFamily(parsed.modelType)
      .tensorSpecs(parsed)
      .filter((s) => s.required)
      .map((s, k) => {
        const n = s.shape.reduce((a, b) => a * b, 1);
        const values = Float32Array.from({ length: n }, (_, i) => valueAt(i + k));
        // Norms in fp32, matrices in fp16, as mixed checkpoints do.
        return s.shape.length === 1
          ? { name: s.name, dtype: 'F32', shape: [...s.shape], bytes: bytesOf(values) }
          : { name: s.name, dtype: 'F16', shape: [...s.shape], bytes: bytesOf(f32ToF16(values)) };
      });
    await writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  }

  it('opens, validates without lm_head, and widens f16 and f32 exactly', async () => {
    await writeTiny();
    await withCheckpoint(dir, async (ckpt) => {
      expect(ckpt.config.headDim).toBe(4);
      expect(ckpt.names()).toHaveLength(2 + 7 + 2 * 3);
      expect(ckpt.has('lm_head.weight')).toBe(false);
      expect(ckpt.validateArchitecture()).toBeUndefined();
      expect(ckpt.info('model.layers.0.self_attn.k_proj.weight')).toMatchObject({
        dtype: 'F16',
        shape: [4, 8],
        file: path.join(dir, 'model.safetensors'),
      });

      const embd = await ckpt.readF32('model.embed_tokens.weight');
      expect(embd.shape).toEqual([16, 8]);
      expect(Array.from(embd.data.subarray(0, 8))).toEqual([-0.5, -0.25, 0, 0.25, 0.5, 0.75, 1, -0.5]);
      const norm = await ckpt.readF32('model.norm.weight');
      expect(norm.shape).toEqual([8]);
      expect(Array.from(norm.data)).toEqual([-0.25, 0, 0.25, 0.5, 0.75, 1, -0.5, -0.25]);
      expect(ckpt.bytesRead).toBe(
        (await headerBytesOf(path.join(dir, 'model.safetensors'))) + 16 * 8 * 2 + 8 * 4,
      );
    });
  });

  it('prefers model.safetensors over an index, as transformers does', async () => {
    await writeTiny();
    await copyDemoFile(DEMO_INDEX, path.join(dir, DEMO_INDEX));
    await withCheckpoint(dir, async (ckpt) => {
      expect(ckpt.config.hiddenSize).toBe(8);
      expect(ckpt.names()).toHaveLength(15);
    });
  });
});

function sum(data: Float32Array): number {
  let s = 0;
  for (const x of data) s += x;
  return s;
}
