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
});
