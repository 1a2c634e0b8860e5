// Published config.json files (test/fixtures/configs, sources in its README) pass their family's
// validation and get the layer plan the model defines.

import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { familyOf } from '../../../shared/families/registry.js';
import { parseModelConfig } from '../../../shared/model/config.js';

const CONFIGS = fileURLToPath(new URL('../../fixtures/configs/', import.meta.url));

async function published(name: string) {
  const file = `${CONFIGS}${name}.json`;
  return parseModelConfig(JSON.parse(await readFile(file, 'utf8')), file);
}

describe('published configs', () => {
  it('Mixtral-8x7B-Instruct-v0.1: 32 MoE layers of 8 softmax experts, top-2 renormalised', async () => {
    const config = await published('Mixtral-8x7B-Instruct-v0.1');
    const family = familyOf(config);
    expect(family.modelType).toBe('mixtral');
    const plan = family.layerPlan(config);
    expect(plan).toHaveLength(32);
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
    expect(family.graphDims(config)).toMatchObject({
      hidden: 4096,
      heads: 32,
      kvHeads: 8,
      headDim: 128,
      ffn: 14336,
    });
    expect(config.ropeTheta).toBe(1e6);
    // Mistral's published sizes: 46.7B parameters, 12.9B active per token (2 of 8 experts).
    const specs = family.tensorSpecs(config);
    const count = (ss: typeof specs) => ss.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
    const total = count(specs);
    const perExpert = count(specs.filter((s) => s.expert !== undefined)) / (32 * 8);
    expect((total / 1e9).toFixed(1)).toBe('46.7');
    expect(((total - 32 * 6 * perExpert) / 1e9).toFixed(1)).toBe('12.9');
  });

  // allenai's OLMoE-1B-7B-0924 and its SFT stage publish the same architecture (they differ in
  // router_aux_loss_coef and transformers_version) and omit rms_norm_eps, so transformers'
  // OlmoeConfig default 1e-05 applies.
  it.each(['OLMoE-1B-7B-0924', 'OLMoE-1B-7B-0924-SFT'])(
    '%s: 16 MoE layers of 64 softmax experts, top-8 not renormalised',
    async (name) => {
      const config = await published(name);
      const family = familyOf(config);
      expect(family.modelType).toBe('olmoe');
      expect(config.rmsNormEps).toBe(1e-5);
      expect(config.ropeTheta).toBe(10000);
      const plan = family.layerPlan(config);
      expect(plan).toHaveLength(16);
      for (const layer of plan) {
        expect(layer).toEqual({
          kind: 'moe',
          numExperts: 64,
          nativeK: 8,
          gate: 'softmax',
          renormalize: false,
          sharedExperts: 0,
          routedScalingFactor: 1,
        });
      }
      expect(family.graphDims(config)).toMatchObject({
        hidden: 2048,
        heads: 16,
        kvHeads: 16,
        headDim: 128,
        ffn: 1024,
        vocab: 50304,
      });
      // Per expert 3 x 2048 x 1024 = 6,291,456 per layer. Dense per layer: q, k, v, o 4 x 2048^2,
      // q/k norms over the whole projections 2 x 2048, 2 layer norms, router 64 x 2048 =
      // 16,916,480; x 16 + embed and lm_head 2 x 50304 x 2048 + final norm = 476,710,912.
      // Total 476,710,912 + 6,291,456 x 64 x 16 = 6,919,161,856 ("7B"); active with 8 of 64
      // experts: 476,710,912 + 6,291,456 x 8 x 16 = 1,282,017,280 ("1B", 1.3B).
      const { total, perExpertLayer } = countParams(family.tensorSpecs(config), 16, 64);
      expect(perExpertLayer).toBe(6_291_456);
      expect(total).toBe(6_919_161_856);
      expect(total - 16 * (64 - 8) * perExpertLayer).toBe(1_282_017_280);
    },
  );

  it('Qwen1.5-MoE-A2.7B-Chat: 24 MoE layers of 60 softmax experts, top-4 not renormalised, a shared expert', async () => {
    const config = await published('Qwen1.5-MoE-A2.7B-Chat');
    const family = familyOf(config);
    expect(family.modelType).toBe('qwen2_moe');
    // sliding_window 4096 is published with use_sliding_window false: no window.
    expect(config.slidingWindow).toBeNull();
    expect(config.rmsNormEps).toBe(1e-6);
    expect(config.ropeTheta).toBe(1e6);
    const plan = family.layerPlan(config);
    expect(plan).toHaveLength(24);
    for (const layer of plan) {
      expect(layer).toEqual({
        kind: 'moe',
        numExperts: 60,
        nativeK: 4,
        gate: 'softmax',
        renormalize: false,
        sharedExperts: 1,
        routedScalingFactor: 1,
      });
    }
    expect(family.graphDims(config)).toMatchObject({
      hidden: 2048,
      heads: 16,
      kvHeads: 16,
      headDim: 128,
      ffn: 1408,
      vocab: 151936,
    });
    // Per expert 3 x 2048 x 1408 = 8,650,752 per layer. Dense per layer: q, k, v, o 4 x 2048^2,
    // q/k/v biases 3 x 2048, 2 norms, router 60 x 2048, shared expert 3 x 2048 x 5632, its sigmoid
    // gate 2048 = 51,515,392; x 24 + embed and lm_head 2 x 151936 x 2048 + final norm =
    // 1,858,701,312. Total + 8,650,752 x 60 x 24 = 14,315,784,192 (Qwen: 14.3B); active with 4 of
    // 60 routed experts (the shared one always runs): 2,689,173,504 (the "A2.7B").
    const { total, perExpertLayer } = countParams(family.tensorSpecs(config), 24, 60);
    expect(perExpertLayer).toBe(8_650_752);
    expect(total).toBe(14_315_784_192);
    expect(total - 24 * (60 - 4) * perExpertLayer).toBe(2_689_173_504);
  });
});

/** All parameters, and one routed expert's parameters in one MoE layer. */
function countParams(
  specs: readonly { readonly shape: readonly number[]; readonly expert?: number | undefined }[],
  moeLayers: number,
  experts: number,
): { total: number; perExpertLayer: number } {
  const size = (s: { readonly shape: readonly number[] }) => s.shape.reduce((a, b) => a * b, 1);
  const total = specs.reduce((n, s) => n + size(s), 0);
  const routed = specs.filter((s) => s.expert !== undefined).reduce((n, s) => n + size(s), 0);
  return { total, perExpertLayer: routed / (moeLayers * experts) };
}
