// What routing a request may name: a shipped profile's name (`recommended`) means that profile when
// the server loaded it, and is refused by name otherwise; names that merely look like object keys
// are ordinary (bad) specs.

import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { routingModelOfConfig } from '../../../coordinator/moe/routing-model.js';
import { InvalidRequestError } from '../../../coordinator/server/errors.js';
import { RoutingCatalog } from '../../../coordinator/server/routing-catalog.js';
import { loadModelConfig } from '../../../shared/model/config.js';
import { loadRoutingProfile } from '../../../shared/routing/profile.js';
import { MODEL_DIR, ROOT } from '../../helpers/paths.js';

const RECOMMENDED = path.join(ROOT, 'profiles', 'recommended.json');

async function model() {
  const fingerprint = loadRoutingProfile(RECOMMENDED).model!.fingerprint!;
  return { ...routingModelOfConfig(await loadModelConfig(MODEL_DIR)), fingerprint };
}

describe('routing catalog', () => {
  it('resolves "recommended" to the loaded shipped profile', async () => {
    const catalog = new RoutingCatalog(await model(), RECOMMENDED, []);
    expect(catalog.resolve('recommended')).toEqual(catalog.default);
    expect(catalog.resolve('recommended').key).toBe(RECOMMENDED);
  });

  it('refuses "recommended" by name when the server did not load it, and treats object keys as specs', async () => {
    const catalog = new RoutingCatalog(await model(), 'topk:2', []);
    expect(() => catalog.resolve('recommended')).toThrow(InvalidRequestError);
    expect(() => catalog.resolve('recommended')).toThrow(
      /routing profile 'recommended' \(profiles\/recommended.json\) is not loaded by this server/,
    );
    for (const name of ['constructor', '__proto__', 'toString']) {
      expect(() => catalog.resolve(name)).toThrow(/invalid routing spec/);
    }
  });
});
