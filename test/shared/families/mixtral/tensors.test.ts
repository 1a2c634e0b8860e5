import { describe, expect, it } from 'vitest';
import { mixtralFamily } from '../../../../shared/families/mixtral/family.js';
import { loadModelConfig, type ModelConfig } from '../../../../shared/model/config.js';
import { DEMO_DIR, DEMO_INDEX, demoJson } from '../../model/fixtures.js';

const { expectedShapes, tensorSpecs } = mixtralFamily;

describe('tensorNames (mixtral)', () => {
  const names = mixtralFamily.tensorNames;

  it('spells the global tensors as Hugging Face does', () => {
    expect(names.global).toEqual({
      tokenEmbd: 'model.embed_tokens.weight',
      outputNorm: 'model.norm.weight',
      output: 'lm_head.weight',
    });
  });

  it('fills the layer index into every per-layer name', () => {
    expect(names.layer(3)).toEqual({
      attnNorm: 'model.layers.3.input_layernorm.weight',
      attnQ: 'model.layers.3.self_attn.q_proj.weight',
      attnK: 'model.layers.3.self_attn.k_proj.weight',
      attnV: 'model.layers.3.self_attn.v_proj.weight',
      attnOut: 'model.layers.3.self_attn.o_proj.weight',
      ffnNorm: 'model.layers.3.post_attention_layernorm.weight',
      router: 'model.layers.3.block_sparse_moe.gate.weight',
    });
  });

  it('fills layer and expert indices into the expert names', () => {
    expect(names.expert(12, 7)).toEqual({
      w1: 'model.layers.12.block_sparse_moe.experts.7.w1.weight',
      w2: 'model.layers.12.block_sparse_moe.experts.7.w2.weight',
      w3: 'model.layers.12.block_sparse_moe.experts.7.w3.weight',
    });
  });

  it('rejects negative or fractional indices', () => {
    expect(() => names.layer(-1)).toThrow('layer index must be an integer >= 0, got -1');
    expect(() => names.expert(0, 1.5)).toThrow('expert index must be an integer >= 0, got 1.5');
  });
});

describe('expectedShapes and tensorSpecs', () => {
  it('gives nn.Linear [out, in] shapes for the demo config (GQA: k/v smaller than q)', async () => {
    const config = await loadModelConfig(DEMO_DIR);
    expect(expectedShapes(config)).toEqual({
      global: { tokenEmbd: [4096, 256], outputNorm: [256], output: [4096, 256] },
      layer: {
        attnNorm: [256],
        attnQ: [256, 256],
        attnK: [128, 256],
        attnV: [128, 256],
        attnOut: [256, 256],
        ffnNorm: [256],
        router: [8, 256],
      },
      expert: { w1: [512, 256], w2: [256, 512], w3: [512, 256] },
    });
  });

  it('uses head_dim, not hidden_size, for attention projections when they differ', async () => {
    const config: ModelConfig = { ...(await loadModelConfig(DEMO_DIR)), headDim: 64 };
    const { layer } = expectedShapes(config);
    expect(layer.attnQ).toEqual([512, 256]);
    expect(layer.attnK).toEqual([256, 256]);
    expect(layer.attnOut).toEqual([256, 512]);
  });

  it('lists exactly the tensors of the demo checkpoint, with the shapes in its shard headers', async () => {
    const config = await loadModelConfig(DEMO_DIR);
    const specs = tensorSpecs(config);
    expect(specs).toHaveLength(3 + 4 * 7 + 4 * 8 * 3);
    const index = (await demoJson(DEMO_INDEX))['weight_map'] as Record<string, string>;
    expect(specs.map((s) => s.name).sort()).toEqual(Object.keys(index).sort());
    expect(specs.every((s) => s.required)).toBe(true);
    const w2 = specs.find((s) => s.name === 'model.layers.2.block_sparse_moe.experts.5.w2.weight');
    expect(w2).toEqual({
      name: 'model.layers.2.block_sparse_moe.experts.5.w2.weight',
      role: 'w2',
      shape: [256, 512],
      required: true,
      layer: 2,
      expert: 5,
    });
  });

  it('makes the LM head optional when embeddings are tied', async () => {
    const config: ModelConfig = { ...(await loadModelConfig(DEMO_DIR)), tieWordEmbeddings: true };
    const optional = tensorSpecs(config).filter((s) => !s.required);
    expect(optional.map((s) => s.name)).toEqual(['lm_head.weight']);
  });
});
