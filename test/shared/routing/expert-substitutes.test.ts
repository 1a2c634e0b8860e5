// Linear substitutes of skipped experts: the stored form round-trips, bad tables are named, the
// forward (up (down x) + bias) matches a direct computation, and a skip profile carrying them adds
// native weight x substitute(x) for exactly the skipped experts (profile version 3; older versions
// still load, a version-2 profile cannot carry them).

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeExpertMeans } from '../../../shared/routing/expert-means.js';
import {
  addSubstitute,
  decodeExpertSubstitutes,
  encodeExpertSubstitutes,
} from '../../../shared/routing/expert-substitutes.js';
import { loadRoutingProfile, resolveRouting } from '../../../shared/routing/profile.js';
import { createRoutingPolicy } from '../../../shared/routing/registry.js';
import { direct, randomSubstitutes, values } from '../../helpers/substitutes.js';
import { routerInput, TINY_MIXTRAL, tokenSlice } from './helpers.js';

describe('expert substitutes', () => {
  it('round-trip through their JSON form bit for bit', () => {
    const s = randomSubstitutes(2, 3, 2, 5);
    const back = decodeExpertSubstitutes(encodeExpertSubstitutes(s));
    expect(back).toEqual(s);
  });

  it('name a table of the wrong size, a non-finite value and a rank above the hidden size', () => {
    const json = encodeExpertSubstitutes(randomSubstitutes(2, 3, 2, 5));
    expect(decodeExpertSubstitutes({ ...json, shape: [2, 3, 3, 5] })).toMatch(
      /expertSubstitutes.down holds 240 bytes; its shape needs 360/,
    );
    expect(decodeExpertSubstitutes({ ...json, shape: [2, 3, 6, 5] })).toMatch(/rank 6 exceeds hidden size 5/);
    const bad = randomSubstitutes(2, 3, 2, 5);
    bad.bias[7] = Number.NaN;
    expect(decodeExpertSubstitutes(encodeExpertSubstitutes(bad))).toMatch(
      /expertSubstitutes.bias value 7 is NaN/,
    );
  });

  it('add weight x (up (down x) + bias) into the output row, as computed directly', () => {
    const s = randomSubstitutes(2, 3, 4, 16);
    const x = values(2 * 16, 9);
    const out = values(3 * 16, 10);
    const before = Float32Array.from(out);
    addSubstitute(s, 1, 2, 0.25, x, 16, out, 32, new Float64Array(4));
    const want = direct(s, 1, 2, x.subarray(16, 32));
    for (let i = 0; i < 16; i++) expect(out[32 + i]).toBeCloseTo(before[32 + i]! + 0.25 * want[i]!, 5);
    expect(Array.from(out.subarray(0, 32))).toEqual(Array.from(before.subarray(0, 32)));
  });
});

describe('skip policy with expert substitutes', () => {
  const H = 6;
  const subs = randomSubstitutes(4, 8, 3, H);
  const expertSubstitutes = encodeExpertSubstitutes(subs);
  // Token 0 skips expert 1 (native weight 0.2 / 0.7 < 0.3); token 1 keeps both experts.
  const probs = Float32Array.from([
    0.5, 0.2, 0.1, 0.1, 0.05, 0.05, 0, 0, 0.4, 0.35, 0.05, 0.05, 0.05, 0.05, 0.05, 0,
  ]);
  const x = values(2 * H, 11);

  it('adds native weight x substitute(x) of each skipped expert as the prior, nothing for kept ones', () => {
    const policy = createRoutingPolicy({ kind: 'skip', tau: 0.3, expertSubstitutes }, TINY_MIXTRAL, 's');
    const d = policy.route({ ...routerInput(2, 8, probs), x });
    expect(tokenSlice(d, 0).experts).toEqual([0]);
    expect(tokenSlice(d, 1).experts).toEqual([0, 1]);
    const w = Math.fround(0.2) / (Math.fround(0.5) + Math.fround(0.2));
    const want = direct(subs, 2, 1, x.subarray(0, H));
    for (let i = 0; i < H; i++) expect(d.prior![i]).toBeCloseTo(w * want[i]!, 5);
    expect(Array.from(d.prior!.subarray(H, 2 * H))).toEqual(new Array(H).fill(0));
  });

  it('refuses tables of another hidden width when the model states its own, at resolve time', () => {
    const wide = { ...TINY_MIXTRAL, hidden: 8 };
    expect(() => createRoutingPolicy({ kind: 'skip', tau: 0.3, expertSubstitutes }, wide)).toThrow(
      /expertSubstitutes rows are 6 wide; the model's hidden size is 8/,
    );
    const expertMeans = encodeExpertMeans({
      layers: 4,
      experts: 8,
      hidden: H,
      data: new Float32Array(4 * 8 * H),
    });
    expect(() => createRoutingPolicy({ kind: 'skip', tau: 0.3, expertMeans }, wide)).toThrow(
      /expertMeans rows are 6 wide; the model's hidden size is 8/,
    );
    expect(
      createRoutingPolicy({ kind: 'skip', tau: 0.3, expertSubstitutes }, { ...wide, hidden: H }).maxK,
    ).toBe(2);
  });

  it('names the profile, not the router, when finite tables overflow on an input', () => {
    const huge = randomSubstitutes(4, 8, 3, H);
    huge.down.fill(3e38);
    const policy = createRoutingPolicy(
      { kind: 'skip', tau: 0.3, expertSubstitutes: encodeExpertSubstitutes(huge) },
      TINY_MIXTRAL,
      'huge',
    );
    expect(() => policy.route({ ...routerInput(2, 8, probs), x: Float32Array.from(x, () => 1) })).toThrow(
      /layer 2 token 0: the linear substitute of expert 1 is not finite for this input; the profile's expertSubstitutes values are too large/,
    );
  });

  it('refuses text outside the base64 alphabet (Node would skip it silently)', () => {
    const json = encodeExpertSubstitutes(randomSubstitutes(2, 3, 2, 5));
    expect(decodeExpertSubstitutes({ ...json, up: `${json.up.slice(0, -4)}!!!!` })).toMatch(
      /expertSubstitutes.up is not base64/,
    );
    expect(decodeExpertSubstitutes({ ...json, up: ` ${json.up.slice(1)}` })).toMatch(/is not base64/);
  });

  it('refuses to route without the expert input rows, and a profile carrying means and substitutes', () => {
    const policy = createRoutingPolicy({ kind: 'skip', tau: 0.3, expertSubstitutes }, TINY_MIXTRAL, 's');
    expect(() => policy.route(routerInput(2, 8, probs))).toThrow(
      /linear substitutes of the expert input; it needs x of 2 x 6 values, got none/,
    );
    const expertMeans = encodeExpertMeans({
      layers: 4,
      experts: 8,
      hidden: H,
      data: new Float32Array(4 * 8 * H),
    });
    expect(() =>
      createRoutingPolicy({ kind: 'skip', tau: 0.3, expertMeans, expertSubstitutes }, TINY_MIXTRAL),
    ).toThrow(/expertMeans and expertSubstitutes are alternatives/);
    const wrong = encodeExpertSubstitutes(randomSubstitutes(2, 8, 3, H));
    expect(() =>
      createRoutingPolicy({ kind: 'skip', tau: 0.3, expertSubstitutes: wrong }, TINY_MIXTRAL),
    ).toThrow(/expertSubstitutes covers 2 layers x 8 experts; the model has 4 x 8/);
  });

  describe('in a profile', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-substitutes-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const write = (name: string, version: number) => {
      const file = path.join(dir, name);
      const policy = { kind: 'skip', tau: [0.3, 0.2, 0.1, 0], expertSubstitutes };
      writeFileSync(file, JSON.stringify({ kmoeRoutingProfile: version, policy }));
      return file;
    };

    it('refuses a profile nested deeper than any real one (the validator would overflow the stack)', () => {
      // Written as text: JSON.stringify itself recurses.
      const deep = `${'['.repeat(20_000)}0${']'.repeat(20_000)}`;
      const file = path.join(dir, 'deep.json');
      writeFileSync(
        file,
        `{"kmoeRoutingProfile": 3, "policy": {"kind": "skip", "tau": 0.3}, "provenance": {"x": ${deep}}}`,
      );
      expect(() => loadRoutingProfile(file)).toThrow(/is nested deeper than 64 levels/);
    });

    it('needs version 3; loads and routes with it', () => {
      expect(() => loadRoutingProfile(write('v2.json', 2))).toThrow(
        /skip with expertSubstitutes needs kmoeRoutingProfile >= 3/,
      );
      const policy = resolveRouting(write('v3.json', 3), TINY_MIXTRAL);
      expect(policy.spec).toBe('v3.json');
      const d = policy.route({ ...routerInput(2, 8, probs), x });
      expect(d.prior).toHaveLength(2 * H);
    });
  });
});
