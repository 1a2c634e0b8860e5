// The Qwen2-MoE, Qwen3-MoE, OLMoE and DeepSeek-V3 families on their tiny checkpoints: config
// validation (errors name the field), every checkpoint tensor matched to a role with its shape, and
// the layer plan each reference README states.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { deepseekV3Family } from '../../../../shared/families/deepseek/family.js';
import { moeLayerIndices } from '../../../../shared/families/layer-plan.js';
import { olmoeFamily } from '../../../../shared/families/olmoe/family.js';
import { qwen2MoeFamily } from '../../../../shared/families/qwen2-moe/family.js';
import { qwen3MoeFamily } from '../../../../shared/families/qwen3-moe/family.js';
import { modelFamily } from '../../../../shared/families/registry.js';
import { Checkpoint } from '../../../../shared/model/checkpoint.js';
import { parseModelConfig } from '../../../../shared/model/config.js';
import { ModelConfigError } from '../../../../shared/model/errors.js';
import { MODELS_DIR } from '../graph-forward.js';

async function rawConfig(model: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path.join(MODELS_DIR, model, 'config.json'), 'utf8'));
}

function configError(obj: Record<string, unknown>): ModelConfigError {
  try {
    parseModelConfig(obj, 'config.json');
  } catch (err) {
    expect(err).toBeInstanceOf(ModelConfigError);
    return err as ModelConfigError;
  }
  throw new Error('expected the config to be rejected');
}

// Parameter counts as each model's README states them (transformers' count: DeepSeek's
// e_score_correction_bias is a buffer there, 16 values in each of the 2 MoE layers, so it is added).
const MODELS = [
  ['tiny-qwen2-moe', qwen2MoeFamily, 1_343_680],
  ['tiny-qwen3-moe', qwen3MoeFamily, 1_194_624],
  ['tiny-olmoe', olmoeFamily, 1_344_000],
  ['tiny-deepseek-v3', deepseekV3Family, 846_512 + 2 * 16],
] as const;

describe.each(MODELS)('%s checkpoint', (model, family, parameters) => {
  it('opens through its family with every tensor matched to a role of the right shape', async () => {
    const ckpt = await Checkpoint.open(path.join(MODELS_DIR, model));
    try {
      expect(ckpt.family).toBe(family);
      expect(modelFamily(ckpt.config.modelType)).toBe(family);
      expect(ckpt.validateArchitecture()).toBeUndefined();
      const specs = family.tensorSpecs(ckpt.config);
      // Nothing in the checkpoint is left unexplained, nothing in the table is missing.
      expect(specs.map((s) => s.name).sort()).toEqual(ckpt.names());
      for (const s of specs) expect(ckpt.info(s.name).shape, s.name).toEqual(s.shape);
      expect(specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0)).toBe(parameters);
    } finally {
      await ckpt.close();
    }
  });
});

describe('qwen2_moe', () => {
  it('plans 2 MoE layers: 60 experts top-4 of a softmax, not renormalised, one gated shared expert', async () => {
    const config = parseModelConfig(await rawConfig('tiny-qwen2-moe'), 'config.json');
    const moe = {
      kind: 'moe',
      numExperts: 60,
      nativeK: 4,
      gate: 'softmax',
      renormalize: false,
      sharedExperts: 1,
      routedScalingFactor: 1,
    };
    expect(qwen2MoeFamily.layerPlan(config)).toEqual([moe, moe]);
    expect(qwen2MoeFamily.graphDims(config)).toMatchObject({
      headDim: 16,
      keyWidth: 32,
      valueWidth: 32,
      ropeDim: 16,
    });
    expect(qwen2MoeFamily.ownConfig(config)).toMatchObject({
      intermediateSize: 32,
      sharedExpertIntermediateSize: 128,
      qkvBias: true,
      ropeTheta: 10000,
    });
  });

  it('makes mlp_only_layers and decoder_sparse_step layers dense', async () => {
    const raw = await rawConfig('tiny-qwen2-moe');
    const config = parseModelConfig(
      { ...raw, num_hidden_layers: 4, decoder_sparse_step: 2, mlp_only_layers: [3] },
      'c',
    );
    expect(qwen2MoeFamily.layerPlan(config).map((l) => l.kind)).toEqual(['dense', 'moe', 'dense', 'dense']);
    const specs = qwen2MoeFamily.tensorSpecs(config).filter((s) => s.layer === 0);
    expect(specs.some((s) => s.name === 'model.layers.0.mlp.gate_proj.weight')).toBe(true);
    expect(specs.some((s) => s.expert !== undefined || s.role === 'router')).toBe(false);
  });

  it('names the field of a bad config', async () => {
    const raw = await rawConfig('tiny-qwen2-moe');
    expect(configError({ ...raw, num_experts_per_tok: 61 }).field).toBe('num_experts_per_tok');
    expect(configError({ ...raw, moe_intermediate_size: undefined }).message).toContain(
      'missing required field "moe_intermediate_size"',
    );
    expect(configError({ ...raw, mlp_only_layers: [2] }).field).toBe('mlp_only_layers');
    expect(configError({ ...raw, num_key_value_heads: 3 }).field).toBe('num_key_value_heads');
  });
});

describe('qwen3_moe', () => {
  it('plans 3 MoE layers: 32 experts top-4 renormalised, no shared expert; explicit head_dim 32', async () => {
    const config = parseModelConfig(await rawConfig('tiny-qwen3-moe'), 'config.json');
    const plan = qwen3MoeFamily.layerPlan(config);
    expect(moeLayerIndices(plan)).toEqual([0, 1, 2]);
    expect(plan[0]).toEqual({
      kind: 'moe',
      numExperts: 32,
      nativeK: 4,
      gate: 'softmax',
      renormalize: true,
      sharedExperts: 0,
      routedScalingFactor: 1,
    });
    expect(config.headDim).toBe(32);
    expect(qwen3MoeFamily.graphDims(config)).toMatchObject({ headDim: 32, keyWidth: 64, ropeDim: 32 });
  });

  it('names the field of a bad config', async () => {
    const raw = await rawConfig('tiny-qwen3-moe');
    expect(configError({ ...raw, num_local_experts: 16 }).field).toBe('num_local_experts');
    expect(configError({ ...raw, attention_bias: true }).field).toBe('attention_bias');
    expect(configError({ ...raw, head_dim: 0 }).field).toBe('head_dim');
    // 4.x configs carry only num_experts.
    expect(parseModelConfig({ ...raw, num_local_experts: undefined }, 'c').numExperts).toBe(32);
  });
});

describe('olmoe', () => {
  it('plans 2 MoE layers: 64 experts top-8, not renormalised', async () => {
    const config = parseModelConfig(await rawConfig('tiny-olmoe'), 'config.json');
    const plan = olmoeFamily.layerPlan(config);
    expect(plan).toHaveLength(2);
    expect(plan[1]).toMatchObject({
      numExperts: 64,
      nativeK: 8,
      gate: 'softmax',
      renormalize: false,
      sharedExperts: 0,
    });
    expect(olmoeFamily.ownConfig(config)).toMatchObject({
      clipQkv: null,
      intermediateSize: 32,
      rmsNormEps: 1e-5,
    });
  });

  it('names the field of a bad config', async () => {
    const raw = await rawConfig('tiny-olmoe');
    expect(configError({ ...raw, clip_qkv: -1 }).field).toBe('clip_qkv');
    expect(configError({ ...raw, attention_bias: true }).field).toBe('attention_bias');
    expect(configError({ ...raw, eos_token_id: 4096 }).field).toBe('eos_token_id');
  });
});

describe('deepseek_v3', () => {
  it('plans a dense layer 0, then MoE: 16 sigmoid-scored experts in 4 groups (2 kept), top-4, bias, x2.5', async () => {
    const config = parseModelConfig(await rawConfig('tiny-deepseek-v3'), 'config.json');
    const moe = {
      kind: 'moe',
      numExperts: 16,
      nativeK: 4,
      gate: 'sigmoid',
      renormalize: true,
      sharedExperts: 1,
      routedScalingFactor: 2.5,
      selectionBias: true,
      groups: { numGroups: 4, topKGroups: 2 },
    };
    expect(deepseekV3Family.layerPlan(config)).toEqual([{ kind: 'dense' }, moe, moe]);
    // MLA caches heads x (32 nope + 16 rope) keys and heads x 24 values; RoPE on the 16 rope dims.
    expect(deepseekV3Family.graphDims(config)).toMatchObject({
      heads: 4,
      headDim: 48,
      keyWidth: 192,
      valueWidth: 96,
      ropeDim: 16,
      ffn: 32,
    });
  });

  it('names the field of a bad config', async () => {
    const raw = await rawConfig('tiny-deepseek-v3');
    expect(configError({ ...raw, n_group: 3 }).field).toBe('n_group');
    expect(configError({ ...raw, topk_group: 5 }).field).toBe('topk_group');
    expect(configError({ ...raw, scoring_func: 'softmax' }).field).toBe('scoring_func');
    expect(configError({ ...raw, qk_head_dim: 40 }).field).toBe('qk_head_dim');
    expect(configError({ ...raw, kv_lora_rank: undefined }).field).toBe('kv_lora_rank');
    expect(configError({ ...raw, num_experts_per_tok: 9 }).field).toBe('num_experts_per_tok');
  });

  it('reads the deepseek_v2 variant: softmax router, greedy top-K, no correction bias, plain q projection', async () => {
    const raw = await rawConfig('tiny-deepseek-v3');
    const v2 = {
      ...raw,
      model_type: 'deepseek_v2',
      scoring_func: 'softmax',
      topk_method: 'greedy',
      q_lora_rank: null,
      norm_topk_prob: false,
      routed_scaling_factor: 1,
    };
    const config = parseModelConfig(v2, 'c');
    const family = modelFamily('deepseek_v2');
    expect(family.layerPlan(config)[1]).toEqual({
      kind: 'moe',
      numExperts: 16,
      nativeK: 4,
      gate: 'softmax',
      renormalize: false,
      sharedExperts: 1,
      routedScalingFactor: 1,
    });
    const layer1 = family.tensorSpecs(config).filter((s) => s.layer === 1 && s.expert === undefined);
    expect(layer1.map((s) => s.role)).toContain('attnQ');
    expect(layer1.map((s) => s.role)).not.toContain('routerBias');
    expect(layer1.find((s) => s.role === 'attnQ')?.shape).toEqual([4 * 48, 64]);
    // group_limited_greedy keeps the groups, scored by their best expert.
    const grouped = parseModelConfig({ ...v2, topk_method: 'group_limited_greedy' }, 'c');
    expect(family.layerPlan(grouped)[1]).toMatchObject({ groups: { numGroups: 4, topKGroups: 2 } });
    expect(configError({ ...v2, topk_method: 'noaux_tc' }).field).toBe('topk_method');
    expect(() => deepseekV3Family.ownConfig(config)).toThrow(
      'the deepseek_v3 family was given a config of model_type "deepseek_v2"',
    );
  });

  it('refuses to build graphs for a RoPE scaling it does not compute, naming the field', async () => {
    const ckpt = await Checkpoint.open(path.join(MODELS_DIR, 'tiny-deepseek-v3'));
    try {
      const yarn = parseModelConfig(
        { ...(await rawConfig('tiny-deepseek-v3')), rope_scaling: { type: 'yarn', factor: 40 } },
        'c',
      );
      const source = {
        config: yarn,
        has: (n: string) => ckpt.has(n),
        readF32: (n: string) => ckpt.readF32(n),
        read: (n: string) => ckpt.read(n),
      };
      await expect(deepseekV3Family.denseLayerGraph(source, 0)).rejects.toMatchObject({
        details: { field: 'rope_scaling' },
      });
    } finally {
      await ckpt.close();
    }
  });
});
