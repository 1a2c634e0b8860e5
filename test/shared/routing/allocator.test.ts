// The learned allocator: its forward (features, two linear heads, thresholds, native weights,
// prior of the dropped experts) against a direct computation written from the definition, and
// profile versioning (version-1 profiles still load; the allocator needs version 2).

import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RoutingConfigError } from '../../../shared/routing/errors.js';
import { encodeExpertMeans } from '../../../shared/routing/expert-means.js';
import { ALLOCATOR_FEATURE_SET, type AllocatorConfig } from '../../../shared/routing/policies/allocator.js';
import { loadRoutingProfile, resolveRouting } from '../../../shared/routing/profile.js';
import { createRoutingPolicy } from '../../../shared/routing/registry.js';
import { seededUniform } from '../../helpers/seeded-random.js';
import { routerInput, softmax, TINY_MIXTRAL } from './helpers.js';

const E = 8;
const H = 5;
const L = 4;
const F = 6;

const rng = seededUniform;

function randomConfig(r: () => number): AllocatorConfig {
  const weights = () => Array.from({ length: F + E }, () => r() * 4 - 2);
  const means = () => ({
    layers: L,
    experts: E,
    hidden: H,
    data: Float32Array.from({ length: L * E * H }, () => r() * 2 - 1),
  });
  return {
    kind: 'allocator',
    featureSet: ALLOCATOR_FEATURE_SET,
    // Thresholds near the middle of the scores, so every K in {0, 1, 2} occurs.
    layers: Array.from({ length: L }, () => ({
      dropSecond: weights(),
      dropAll: weights(),
      k1Below: r() * 2 - 0.5,
      k0Below: r() * 2 - 0.5,
    })),
    expertMeans: encodeExpertMeans(means()),
    leadMeans: encodeExpertMeans(means()),
  };
}

/** The allocator's definition, computed directly (no shared code with the policy). */
function direct(
  config: AllocatorConfig,
  layer: number,
  row: Float32Array,
  rule = { renormalize: true, scale: 1 },
) {
  const order = Array.from(row, (p, e) => ({ p, e })).sort((a, b) => b.p - a.p || a.e - b.e);
  const [first, second] = [order[0]!, order[1]!];
  const p1 = first.p;
  const p2 = second.p;
  const h = Math.max(0, -Array.from(row).reduce((s, p) => s + p * Math.log(p + 1e-9), 0));
  // Features read the normalised scores; weights follow the rule (raw or renormalised, then scaled).
  const f2 = p2 / (p1 + p2);
  const native = rule.renormalize ? p1 + p2 : 1;
  const w1 = (p1 / native) * rule.scale;
  const w2 = (p2 / native) * rule.scale;
  const feats = [1, f2, p2 / p1, h, p1, Math.log(f2 + 1e-6)];
  const head = config.layers[layer]!;
  const score = (w: number[], expert: number) => feats.reduce((s, f, i) => s + f * w[i]!, w[F + expert]!);
  const s2 = score(head.dropSecond, second.e);
  const s0 = score(head.dropAll, first.e);
  const k = s2 < head.k1Below ? (s0 < head.k0Below ? 0 : 1) : 2;
  const decode = (b64: string) => new Float32Array(new Uint8Array(Buffer.from(b64, 'base64')).buffer);
  const second_ = decode(config.expertMeans.data);
  const lead = decode(config.leadMeans.data);
  const prior = new Array<number>(H).fill(0);
  for (let i = 0; i < H; i++) {
    if (k <= 1) prior[i]! += w2 * second_[(layer * E + second.e) * H + i]!;
    if (k === 0) prior[i]! += w1 * lead[(layer * E + first.e) * H + i]!;
  }
  return { k, experts: [first.e, second.e].slice(0, k), weights: [w1, w2].slice(0, k), prior };
}

describe('allocator policy', () => {
  it('matches a direct computation of features, heads, thresholds, weights and prior', () => {
    const r = rng(14);
    const config = randomConfig(r);
    const policy = createRoutingPolicy(config, TINY_MIXTRAL, 'allocator-test');
    const seenK = new Set<number>();
    for (let layer = 0; layer < L; layer++) {
      const T = 64;
      const probs = new Float32Array(T * E);
      for (let t = 0; t < T; t++) {
        // Sharp and flat rows alike: logits scaled by a random temperature.
        const scale = 0.5 + r() * 6;
        probs.set(softmax(Array.from({ length: E }, () => (r() - 0.5) * scale)), t * E);
      }
      const d = policy.route(routerInput(layer, E, probs));
      expect(d.prior).toBeDefined();
      for (let t = 0; t < T; t++) {
        const want = direct(config, layer, probs.subarray(t * E, (t + 1) * E));
        const from = d.offsets[t]!;
        const k = d.offsets[t + 1]! - from;
        seenK.add(k);
        expect(k).toBe(want.k);
        expect(Array.from(d.experts.subarray(from, from + k))).toEqual(want.experts);
        // fp32 weights of an fp64 ratio: within one float32 rounding.
        const weights = d.weights.subarray(from, from + k);
        for (let i = 0; i < k; i++) expect(Math.abs(weights[i]! - want.weights[i]!)).toBeLessThan(1e-7);
        // Prior: at most two fp32 products summed in fp32 vs fp64: relative 1e-6.
        for (let i = 0; i < H; i++) {
          const v = d.prior![t * H + i]!;
          expect(Math.abs(v - want.prior[i]!)).toBeLessThan(1e-6 * (1 + Math.abs(want.prior[i]!)));
        }
      }
    }
    expect([...seenK].sort()).toEqual([0, 1, 2]);
  });

  it('follows a softmax rule without renormalisation and with a routed scaling factor', () => {
    const r = rng(15);
    const config = randomConfig(r);
    const model = {
      ...TINY_MIXTRAL,
      rule: { gate: 'softmax' as const, renormalize: false, routedScalingFactor: 2.5 },
    };
    const policy = createRoutingPolicy(config, model, 'allocator-raw');
    const seenK = new Set<number>();
    for (let layer = 0; layer < L; layer++) {
      const T = 64;
      const probs = new Float32Array(T * E);
      for (let t = 0; t < T; t++) {
        const scale = 0.5 + r() * 6;
        probs.set(softmax(Array.from({ length: E }, () => (r() - 0.5) * scale)), t * E);
      }
      const d = policy.route(routerInput(layer, E, probs));
      for (let t = 0; t < T; t++) {
        const want = direct(config, layer, probs.subarray(t * E, (t + 1) * E), {
          renormalize: false,
          scale: 2.5,
        });
        const from = d.offsets[t]!;
        const k = d.offsets[t + 1]! - from;
        seenK.add(k);
        expect(k).toBe(want.k);
        expect(Array.from(d.experts.subarray(from, from + k))).toEqual(want.experts);
        const weights = d.weights.subarray(from, from + k);
        for (let i = 0; i < k; i++) expect(Math.abs(weights[i]! - want.weights[i]!)).toBeLessThan(1e-6);
        for (let i = 0; i < H; i++) {
          const v = d.prior![t * H + i]!;
          expect(Math.abs(v - want.prior[i]!)).toBeLessThan(1e-6 * (1 + Math.abs(want.prior[i]!)));
        }
      }
    }
    expect([...seenK].sort()).toEqual([0, 1, 2]);
  });

  it('refuses a sigmoid router gate with a typed error', () => {
    const model = {
      ...TINY_MIXTRAL,
      rule: { gate: 'sigmoid' as const, renormalize: true, routedScalingFactor: 1 },
    };
    let error: unknown;
    try {
      createRoutingPolicy(randomConfig(rng(3)), model, 'allocator-sigmoid');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(RoutingConfigError);
    expect((error as RoutingConfigError).message).toMatch(
      /allocator needs a softmax router gate; the model's gate is sigmoid/,
    );
  });

  it('has no spec form: the allocator exists only as a profile', () => {
    expect(() => resolveRouting('allocator:1', TINY_MIXTRAL)).toThrow(/learned weights: pass its profile/);
  });
});

describe('routing profile versions', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-allocator-'));
  const write = (name: string, json: unknown) => {
    const file = path.join(dir, name);
    writeFileSync(file, JSON.stringify(json));
    return file;
  };

  it('loads every shipped version-1 profile and a version-2 allocator profile', () => {
    const shipped = readdirSync('profiles').filter((f) => f.endsWith('.json'));
    const v1 = shipped
      .map((f) => path.join('profiles', f))
      .filter((f) => loadRoutingProfile(f).kmoeRoutingProfile === 1);
    expect(v1.length).toBeGreaterThanOrEqual(12);
    for (const file of v1) expect(resolveRouting(file, TINY_MIXTRAL).maxK).toBe(2);
    const allocator = write('allocator.json', { kmoeRoutingProfile: 2, policy: randomConfig(rng(1)) });
    expect(resolveRouting(allocator, TINY_MIXTRAL).spec).toBe('allocator.json');
  });

  it('refuses an allocator in a version-1 profile: version 1 did not have it', () => {
    const file = write('old.json', { kmoeRoutingProfile: 1, policy: randomConfig(rng(2)) });
    expect(() => loadRoutingProfile(file)).toThrow(/policy kind allocator needs kmoeRoutingProfile >= 2/);
  });
});
