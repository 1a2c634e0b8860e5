// Routing profile files: save/load round-trip, resolveRouting for specs and profiles, and the
// validation errors (version, per-layer lengths, unsorted thresholds, model mismatch).

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RoutingConfigError, RoutingProfileError, RoutingSpecError } from '../../../shared/routing/errors.js';
import {
  loadRoutingProfile,
  profileNameOf,
  type RoutingProfile,
  resolveRouting,
  saveRoutingProfile,
} from '../../../shared/routing/profile.js';
import { decisionKs, routerInput, rowWithEntropy, TINY_MIXTRAL } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kmoe-routing-profile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const perLayerProfile: RoutingProfile = {
  kmoeRoutingProfile: 1,
  policy: { kind: 'entropy', kValues: [1, 2], thresholds: [[0.5], [1.5], [0.9], [1.1]] },
  model: { fingerprint: 'sha256:abc', numLayers: 4, numExperts: 8, nativeK: 2 },
  provenance: {
    createdAt: '2025-01-02T03:04:05.000Z',
    method: 'entropy-threshold calibration',
    data: ['valid.docs.u16'],
    budget: 1.6,
    avgK: 1.58,
    ppl: 23.9,
    seed: 7,
    notes: { tokens: 4096 },
  },
};

/** Writes raw JSON (possibly invalid as a profile) and returns its path. */
function writeRaw(name: string, json: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof json === 'string' ? json : JSON.stringify(json));
  return path;
}

function profileErrorOf(fn: () => unknown): RoutingProfileError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(RoutingProfileError);
    return error as RoutingProfileError;
  }
  throw new Error('expected a RoutingProfileError');
}

describe('routing profiles', () => {
  it('save then load returns the same profile, free-form provenance included', () => {
    const path = join(dir, 'nested', 'calibrated.json');
    saveRoutingProfile(path, perLayerProfile);
    expect(loadRoutingProfile(path)).toEqual(perLayerProfile);
    expect(readFileSync(path, 'utf8').endsWith('}\n')).toBe(true);
  });

  it('resolves a profile path to a per-layer policy named by the file', () => {
    const path = join(dir, 'calibrated-1.6.json');
    saveRoutingProfile(path, perLayerProfile);
    const policy = resolveRouting(path, { ...TINY_MIXTRAL, fingerprint: 'sha256:abc' });
    expect(policy.spec).toBe('calibrated-1.6.json');
    const row = rowWithEntropy(8, 1.0);
    expect([0, 1, 2, 3].map((layer) => decisionKs(policy.route(routerInput(layer, 8, row)))[0])).toEqual([
      2, 1, 2, 1,
    ]);
  });

  it('names a profile policy by its canonical spec when it has one', () => {
    const path = join(dir, 'global.json');
    saveRoutingProfile(path, { kmoeRoutingProfile: 1, policy: { kind: 'ratio', beta: 0.3 } });
    expect(resolveRouting(path, TINY_MIXTRAL).spec).toBe('ratio:0.3');
  });

  it('resolves spec strings, rejecting bad ones with RoutingSpecError and misfits with RoutingConfigError', () => {
    const policy = resolveRouting('entropy:1,2@1.04', TINY_MIXTRAL);
    expect(policy.spec).toBe('entropy:1,2@1.04');
    expect(policy.maxK).toBe(2);
    expect(() => resolveRouting('entropy:1,2', TINY_MIXTRAL)).toThrow(RoutingSpecError);
    expect(() => resolveRouting('topk:16', TINY_MIXTRAL)).toThrow(RoutingConfigError);
  });

  it('rejects a wrong or missing version before anything else', () => {
    const v4 = writeRaw('v4.json', { ...perLayerProfile, kmoeRoutingProfile: 4 });
    expect(profileErrorOf(() => loadRoutingProfile(v4)).message).toBe(
      `routing profile ${v4} has kmoeRoutingProfile 4; this kmoe reads versions 1, 2, 3`,
    );
    const none = writeRaw('none.json', { policy: { kind: 'topk', k: 2 } });
    const error = profileErrorOf(() => loadRoutingProfile(none));
    expect(error.message).toMatch(/is not a kmoe routing profile: no "kmoeRoutingProfile" field/);
    expect(error.file).toBe(none);
  });

  it('rejects per-layer arrays whose length differs from the recorded model', () => {
    const path = writeRaw('short.json', {
      ...perLayerProfile,
      policy: { kind: 'topp', p: [0.5, 0.6, 0.7] },
    });
    expect(profileErrorOf(() => loadRoutingProfile(path)).message).toMatch(
      /p has 3 per-layer entries but the model has 4 MoE layers/,
    );
  });

  it('rejects per-layer arrays that do not fit the loaded model when the profile records none', () => {
    const path = writeRaw('no-model.json', {
      kmoeRoutingProfile: 1,
      policy: { kind: 'ratio', beta: [0.3, 0.4] },
    });
    expect(loadRoutingProfile(path).policy).toEqual({ kind: 'ratio', beta: [0.3, 0.4] });
    const error = profileErrorOf(() => resolveRouting(path, TINY_MIXTRAL));
    expect(error.message).toMatch(
      /does not fit the model: .*beta has 2 per-layer entries but the model has 4/,
    );
    expect(error.cause).toBeInstanceOf(RoutingConfigError);
  });

  it('rejects unsorted thresholds, naming the layer', () => {
    const path = writeRaw('unsorted.json', {
      kmoeRoutingProfile: 1,
      policy: {
        kind: 'entropy',
        kValues: [1, 2, 4],
        thresholds: [
          [0.5, 1],
          [1.2, 0.6],
          [0.5, 1],
          [0.5, 1],
        ],
      },
    });
    expect(profileErrorOf(() => loadRoutingProfile(path)).message).toMatch(
      /thresholds\[layer 1\] must be strictly ascending: \[1\] = 0.6 after 1.2/,
    );
  });

  it('rejects k values above the recorded expert count, unknown keys and unknown policy kinds', () => {
    const big = writeRaw('big.json', { ...perLayerProfile, policy: { kind: 'topk', k: 9 } });
    expect(profileErrorOf(() => loadRoutingProfile(big)).message).toMatch(
      /k = 9 exceeds the model's 8 experts/,
    );
    const extra = writeRaw('extra.json', { ...perLayerProfile, polcy: {} });
    expect(profileErrorOf(() => loadRoutingProfile(extra)).message).toMatch(/Unrecognized key.*polcy/);
    const kind = writeRaw('kind.json', { kmoeRoutingProfile: 1, policy: { kind: 'learned' } });
    expect(profileErrorOf(() => loadRoutingProfile(kind)).message).toMatch(/policy/);
  });

  it('rejects a profile made for another model', () => {
    const path = join(dir, 'other-model.json');
    saveRoutingProfile(path, perLayerProfile);
    expect(profileErrorOf(() => resolveRouting(path, { ...TINY_MIXTRAL, numExperts: 16 })).message).toMatch(
      /was made for another model: numExperts is 8 in the profile but 16 in the model/,
    );
    expect(
      profileErrorOf(() => resolveRouting(path, { ...TINY_MIXTRAL, fingerprint: 'sha256:def' })).message,
    ).toMatch(/fingerprint sha256:abc differs from the model's sha256:def/);
  });

  it('reports unreadable files and invalid JSON as profile errors', () => {
    expect(profileErrorOf(() => resolveRouting(join(dir, 'missing.json'), TINY_MIXTRAL)).message).toMatch(
      /cannot read routing profile .*missing\.json/,
    );
    const broken = writeRaw('broken.json', '{"kmoeRoutingProfile": 1,');
    expect(profileErrorOf(() => loadRoutingProfile(broken)).message).toMatch(/is not valid JSON/);
  });

  it('refuses to save an invalid profile and leaves no file behind', () => {
    const path = join(dir, 'invalid.json');
    const invalid = { kmoeRoutingProfile: 1, policy: { kind: 'topp', p: 2 } } as RoutingProfile;
    expect(profileErrorOf(() => saveRoutingProfile(path, invalid)).message).toMatch(
      /p = 2 must be in \(0, 1\]/,
    );
    expect(() => readFileSync(path)).toThrow(/ENOENT/);
  });
});

describe('inline routing profiles', () => {
  it('resolves a profile given as JSON text, named by provenance.name', () => {
    const text = JSON.stringify({
      kmoeRoutingProfile: 1,
      policy: { kind: 'skip', tau: [0, 0.1, 0.2, 0.3] },
      provenance: { name: 'candidate-7' },
    });
    const policy = resolveRouting(text, TINY_MIXTRAL);
    expect(policy.spec).toBe('candidate-7');
    expect(policy.maxK).toBe(2);
  });

  it('refuses a provenance.name longer than a line (it is echoed in logs and responses)', () => {
    const named = (name: string) =>
      JSON.stringify({
        kmoeRoutingProfile: 1,
        policy: { kind: 'skip', tau: [0, 0.1, 0.2, 0.3] },
        provenance: { name },
      });
    expect(resolveRouting(named('n'.repeat(200)), TINY_MIXTRAL).spec).toBe('n'.repeat(200));
    expect(() => resolveRouting(named('n'.repeat(201)), TINY_MIXTRAL)).toThrow(RoutingProfileError);
    expect(() => resolveRouting(named('n'.repeat(3_000_000)), TINY_MIXTRAL)).toThrow(/provenance\.name/);
  });

  it('names a profile after its file, cut to the longest name a profile may carry', () => {
    expect(profileNameOf('profiles/skip-0.6pct.json')).toBe('skip-0.6pct');
    expect(profileNameOf(`/tmp/${'p'.repeat(250)}.json`)).toBe('p'.repeat(200));
  });

  it('names the problem in a malformed inline profile', () => {
    expect(() => resolveRouting('{"kmoeRoutingProfile": 1,', TINY_MIXTRAL)).toThrow(
      /inline routing profile is not valid JSON/,
    );
    expect(() =>
      resolveRouting(
        JSON.stringify({ kmoeRoutingProfile: 1, policy: { kind: 'skip', tau: [0.1] } }),
        TINY_MIXTRAL,
      ),
    ).toThrow(/tau has 1 per-layer entries but the model has 4 MoE layers/);
  });
});
