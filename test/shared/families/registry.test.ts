// The family registry: lookup by model_type, a typed error naming the supported types for any
// other, and the layer plan each family declares.

import { describe, expect, it } from 'vitest';
import { FamilyMismatchError, UnsupportedModelTypeError } from '../../../shared/families/errors.js';
import { moeLayerIndices } from '../../../shared/families/layer-plan.js';
import { mixtralFamily } from '../../../shared/families/mixtral/family.js';
import {
  familyOf,
  findModelFamily,
  modelFamily,
  SUPPORTED_MODEL_TYPES,
} from '../../../shared/families/registry.js';
import { loadModelConfig } from '../../../shared/model/config.js';
import { DEMO_DIR } from '../model/fixtures.js';

describe('the family registry', () => {
  it('knows exactly the supported families', () => {
    expect(SUPPORTED_MODEL_TYPES).toEqual([
      'mixtral',
      'qwen2_moe',
      'qwen3_moe',
      'olmoe',
      'deepseek_v3',
      'deepseek_v2',
    ]);
    expect(modelFamily('mixtral')).toBe(mixtralFamily);
    expect(findModelFamily('llama')).toBeUndefined();
  });

  it('rejects an unsupported model_type with a typed error naming the supported ones', () => {
    let caught: unknown;
    try {
      modelFamily('llama');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UnsupportedModelTypeError);
    const err = caught as UnsupportedModelTypeError;
    expect(err.message).toBe(
      'model_type "llama" is not supported (supported model types: "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3", "deepseek_v2")',
    );
    expect(err.code).toBe('unsupported_model_type');
    expect(err.details).toEqual({ modelType: 'llama', supported: [...SUPPORTED_MODEL_TYPES] });
    expect(err.serialize().details).toEqual(err.details);
  });

  it("finds a config's family by its modelType", async () => {
    const config = await loadModelConfig(DEMO_DIR);
    expect(familyOf(config)).toBe(mixtralFamily);
    expect(() => familyOf({ ...config, modelType: 'llama' })).toThrow(UnsupportedModelTypeError);
  });
});

describe('the mixtral family', () => {
  it('plans every layer as a softmax-gated, renormalised top-K MoE layer without shared experts', async () => {
    const config = await loadModelConfig(DEMO_DIR);
    const plan = mixtralFamily.layerPlan(config);
    expect(plan).toHaveLength(4);
    for (const layer of plan) {
      expect(layer).toEqual({
        kind: 'moe',
        numExperts: 8,
        nativeK: 2,
        gate: 'softmax',
        renormalize: true,
        sharedExperts: 0,
        routedScalingFactor: 1,
      });
    }
    expect(moeLayerIndices(plan)).toEqual([0, 1, 2, 3]);
  });

  it('gives the graph dimensions of the config', async () => {
    const config = await loadModelConfig(DEMO_DIR);
    expect(mixtralFamily.graphDims(config)).toEqual({
      hidden: 256,
      heads: 8,
      kvHeads: 4,
      headDim: 32,
      kvWidth: 128,
      keyWidth: 128,
      valueWidth: 128,
      ropeDim: 32,
      experts: 8,
      ffn: 512,
      vocab: 4096,
      eps: 1e-5,
    });
  });

  it('refuses a config another family parsed', async () => {
    const config = { ...(await loadModelConfig(DEMO_DIR)), modelType: 'olmoe' };
    expect(() => mixtralFamily.layerPlan(config)).toThrow(FamilyMismatchError);
    expect(() => mixtralFamily.ownConfig(config)).toThrow(
      'the mixtral family was given a config of model_type "olmoe"',
    );
  });
});
