// The routing model each family's layer plan gives policies, statistics and profiles: MoE layers only
// (DeepSeek's dense first layer left out), the native rule; the shipped Mixtral profiles still load
// against it, and a profile made for one model is refused by another with the field named.

import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { routingModelOfConfig } from '../../../coordinator/moe/routing-model.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import { loadModelConfig } from '../../../shared/model/config.js';
import { RoutingProfileError } from '../../../shared/routing/errors.js';
import { resolveRouting } from '../../../shared/routing/profile.js';
import { ROOT } from '../../helpers/paths.js';

const model = (name: string) => path.join(ROOT, 'models', name);

describe('routingModelOfConfig', () => {
  it.each([
    ['tiny-mixtral', 4, [0, 1, 2, 3], 8, 2, { gate: 'softmax', renormalize: true, routedScalingFactor: 1 }],
    ['tiny-qwen2-moe', 2, [0, 1], 60, 4, { gate: 'softmax', renormalize: false, routedScalingFactor: 1 }],
    ['tiny-qwen3-moe', 3, [0, 1, 2], 32, 4, { gate: 'softmax', renormalize: true, routedScalingFactor: 1 }],
    ['tiny-olmoe', 2, [0, 1], 64, 8, { gate: 'softmax', renormalize: false, routedScalingFactor: 1 }],
    [
      'tiny-deepseek-v3',
      2,
      [1, 2],
      16,
      4,
      {
        gate: 'sigmoid',
        renormalize: true,
        selectionBias: true,
        groups: { numGroups: 4, topKGroups: 2 },
        routedScalingFactor: 2.5,
      },
    ],
  ] as const)(
    '%s: %i MoE layers %j, %i experts, native K %i',
    async (name, layers, moe, experts, k, rule) => {
      const config = await loadModelConfig(model(name));
      const m = routingModelOfConfig(config);
      // hidden: what per-expert tables in profiles (means, substitutes) are checked against.
      expect(m).toEqual({
        numLayers: layers,
        numExperts: experts,
        nativeK: k,
        moeLayers: moe,
        rule,
        hidden: config.hiddenSize,
      });
    },
  );
});

describe('shipped Mixtral profiles', () => {
  const files = readdirSync(path.join(ROOT, 'profiles')).filter((f) => f.endsWith('.json'));

  it('every one loads for tiny-mixtral and routes a softmax row within its K bounds', async () => {
    expect(files.length).toBeGreaterThan(0);
    const ckpt = await Checkpoint.open(model('tiny-mixtral'));
    const m = { ...routingModelOfConfig(ckpt.config), fingerprint: ckpt.fingerprint() };
    await ckpt.close();
    const probs = Float32Array.from([0.05, 0.4, 0.05, 0.3, 0.05, 0.05, 0.05, 0.05]);
    for (const f of files) {
      const policy = resolveRouting(path.join(ROOT, 'profiles', f), m);
      for (let layer = 0; layer < 4; layer++) {
        // x: profiles with linear substitutes read the token's expert input (hidden 256).
        const d = policy.route({ layer, numTokens: 1, numExperts: 8, probs, x: new Float32Array(256) });
        const k = d.offsets[1]!;
        expect(k, f).toBeGreaterThanOrEqual(1);
        expect(k, f).toBeLessThanOrEqual(2);
        expect(d.experts[0], f).toBe(1);
      }
    }
  });

  it('are refused by another family, naming what differs', async () => {
    const m = routingModelOfConfig(await loadModelConfig(model('tiny-deepseek-v3')));
    const file = path.join(ROOT, 'profiles', files[0]!);
    expect(() => resolveRouting(file, m)).toThrow(RoutingProfileError);
    expect(() => resolveRouting(file, m)).toThrow(/numLayers is 4 in the profile but 2 in the model/);
  });
});
