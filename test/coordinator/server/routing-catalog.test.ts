// What routing a request may name: a shipped profile's name (`recommended`) means that profile when
// the server loaded it, and is refused by name otherwise; names that merely look like object keys
// are ordinary (bad) specs.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isRoutingHandle, routingHandle } from '../../../coordinator/engine/routing-handle.js';
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

  it('sends a large inline profile as its handle with the canonical text, a small one as the text', async () => {
    const catalog = new RoutingCatalog(await model(), 'topk:2', []);
    const big = JSON.parse(readFileSync(RECOMMENDED, 'utf8')) as Record<string, unknown>;
    const r = catalog.resolve(big);
    const canonical = JSON.stringify(big);
    expect(r.key).toBe(routingHandle(canonical));
    expect(isRoutingHandle(r.key)).toBe(true);
    expect(r.text).toBe(canonical);
    expect(r.name).toBe('skip-sub32-quality-0.6pct');
    // Validated once: the same profile again is the remembered resolution.
    expect(catalog.resolve(JSON.parse(canonical) as Record<string, unknown>)).toBe(r);
    const small = catalog.resolve({ kmoeRoutingProfile: 1, policy: { kind: 'topk', k: 1 } });
    expect(small).toEqual({ key: '{"kmoeRoutingProfile":1,"policy":{"kind":"topk","k":1}}', name: 'topk:1' });
    // A client cannot name a handle: it is no spec, profile or path.
    expect(() => catalog.resolve(r.key)).toThrow(InvalidRequestError);
  });
});
