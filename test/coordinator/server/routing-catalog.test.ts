// What routing a request may name: a shipped profile's name (`recommended`) means that profile when
// the server loaded it, and is refused by name otherwise; names that merely look like object keys
// are ordinary (bad) specs.

import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isRoutingHandle, routingHandle } from '../../../coordinator/engine/routing-handle.js';
import { routingModelOfConfig } from '../../../coordinator/moe/routing-model.js';
import { InvalidRequestError, ProfilesBusyError } from '../../../coordinator/server/errors.js';
import { RoutingCatalog } from '../../../coordinator/server/routing-catalog.js';
import { loadModelConfig } from '../../../shared/model/config.js';
import { RoutingProfileError } from '../../../shared/routing/errors.js';
import { loadRoutingProfile } from '../../../shared/routing/profile.js';
import { profileNameClash } from '../../../shared/routing/profile-names.js';
import { MODEL_DIR, ROOT } from '../../helpers/paths.js';
import { type ServeProcess, startServe } from './serve-process.js';

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
      /routing profile 'recommended' \(profiles\/recommended.json\) is not loaded by this server; it loaded no profile files \(kmoe serve loads them at start: --profiles FILE\), or send a profile inline as a JSON object/,
    );
    for (const name of ['constructor', '__proto__', 'toString']) {
      expect(() => catalog.resolve(name)).toThrow(/invalid routing spec/);
    }
  });

  it('lists a profile loaded under several spellings once, by its file name, never by a server path', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-catalog-'));
    const linked = path.join(dir, 'linked.json');
    symlinkSync(RECOMMENDED, linked);
    const relative = path.relative(process.cwd(), RECOMMENDED);
    expect(path.isAbsolute(relative)).toBe(false);
    const catalog = new RoutingCatalog(await model(), RECOMMENDED, [
      relative,
      `${dir}/../${path.basename(dir)}/linked.json`,
    ]);
    expect(catalog.profileNames).toEqual(['recommended.json']);
    expect(Object.keys(catalog.profileDigests)).toEqual(['recommended.json']);
    // The relative spelling given at start, the file name and the shipped name mean the one
    // profile; the absolute spelling does not (a client's absolute path names nothing).
    for (const name of [relative, 'recommended.json', 'recommended'])
      expect(catalog.resolve(name), name).toBe(catalog.default);
    expect(() => catalog.resolve(RECOMMENDED)).toThrow(/is not loaded by this server/);
    // The unknown-profile error names loaded profiles as clients name them.
    let message = '';
    try {
      catalog.resolve('/etc/other.json');
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidRequestError);
      message = (err as Error).message;
    }
    expect(message).toMatch(
      /'\/etc\/other\.json' is not loaded by this server; a request may name a loaded profile by its listed name \(recommended\.json\) or its path relative to the server's working directory, or send a profile inline as a JSON object/,
    );
    expect(message).not.toContain(ROOT);
    expect(message).not.toContain(dir);
  });

  it('takes every spelling of a loaded path relative to the working directory, compared lexically', async () => {
    const relative = path.relative(process.cwd(), RECOMMENDED);
    const dir = path.dirname(relative);
    const spellings = [
      relative,
      `./${relative}`,
      `${dir}//recommended.json`,
      `${dir}/../${dir}/./recommended.json`,
      ' recommended.json ',
    ];
    // Loaded as `--routing recommended` gives it (absolute) or as a relative --profiles entry.
    for (const loaded of [RECOMMENDED, relative]) {
      const catalog = new RoutingCatalog(await model(), 'topk:2', [loaded]);
      const profile = catalog.resolve('recommended');
      expect(profile.key).toBe(loaded);
      for (const name of spellings) expect(catalog.resolve(name), `${loaded}: ${name}`).toBe(profile);
    }
    // Never the filesystem: a link to the loaded file, or a path relative to another directory,
    // names a file this server did not load by that path.
    const tmp = mkdtempSync(path.join(tmpdir(), 'kmoe-catalog-'));
    symlinkSync(RECOMMENDED, path.join(tmp, 'recommended.json'));
    const catalog = new RoutingCatalog(await model(), 'topk:2', [relative]);
    // Nor a path that would confirm where the server keeps its files: absolute, or climbing out
    // of the working directory, even when it names the loaded file.
    const outside = `../${path.basename(process.cwd())}/${relative}`;
    for (const name of [
      path.join(tmp, 'recommended.json'),
      `other/${relative}`,
      'profiles/other.json',
      RECOMMENDED,
      outside,
    ]) {
      expect(() => catalog.resolve(name), name).toThrow(/is not loaded by this server/);
    }
  });

  it('refuses at start two different profile files of one name', async () => {
    const m = await model();
    const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-catalog-'));
    for (const sub of ['a', 'b']) {
      mkdirSync(path.join(dir, sub));
      copyFileSync(RECOMMENDED, path.join(dir, sub, 'p.json'));
    }
    expect(
      () => new RoutingCatalog(m, 'topk:2', [path.join(dir, 'a/p.json'), path.join(dir, 'b/p.json')]),
    ).toThrow(RoutingProfileError);
    expect(
      () => new RoutingCatalog(m, 'topk:2', [path.join(dir, 'a/p.json'), path.join(dir, 'b/p.json')]),
    ).toThrow(/are both named p\.json/);
  });

  it('finds name clashes by the rule the CLI checks too: one file spelt twice is none', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-catalog-'));
    mkdirSync(path.join(dir, 'b'));
    const a = path.join(dir, 'p.json');
    copyFileSync(RECOMMENDED, a);
    copyFileSync(RECOMMENDED, path.join(dir, 'b/p.json'));
    symlinkSync(a, path.join(dir, 'q.json'));
    const real = (p: string) => realpathSync(p);
    expect(profileNameClash([a, `${dir}/./p.json`, path.join(dir, 'q.json')], real)).toBeUndefined();
    expect(profileNameClash([a, path.join(dir, 'b/p.json')], real)).toEqual({
      name: 'p.json',
      first: a,
      second: path.join(dir, 'b/p.json'),
    });
    // A file keeps the name of its first spelling (q.json is p.json): b/q.json would be no clash.
    expect(profileNameClash([a, path.join(dir, 'q.json'), path.join(dir, 'b/p.json')], real)?.second).toBe(
      path.join(dir, 'b/p.json'),
    );
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

  it('validates new large inline profiles for at most a share of each second, then answers 429', async () => {
    const catalog = new RoutingCatalog(await model(), 'topk:2', []);
    const big = JSON.parse(readFileSync(RECOMMENDED, 'utf8')) as { provenance: Record<string, unknown> };
    // Distinct texts (each a new profile to validate), sent as JSON text.
    const copy = (i: number) =>
      JSON.stringify({ ...big, provenance: { ...big.provenance, name: `copy ${i}` } });
    const first = catalog.resolve(copy(0));
    const texts = Array.from({ length: 60 }, (_, i) => copy(i + 1));
    const outcomes: unknown[] = [];
    for (const text of texts) {
      try {
        outcomes.push(catalog.resolve(text));
      } catch (err) {
        outcomes.push(err);
      }
    }
    const refused = outcomes.filter((o) => o instanceof ProfilesBusyError) as ProfilesBusyError[];
    expect(refused.length).toBeGreaterThan(0);
    expect(outcomes.every((o) => o instanceof ProfilesBusyError || 'key' in (o as object))).toBe(true);
    expect(refused[0]!.status).toBe(429);
    expect(refused[0]!.code).toBe('server_busy');
    // A profile validated before (the last accepted: the cache keeps the 8 most recent) is found
    // by its handle and never refused; specs are not metered.
    const last = outcomes.findLastIndex((o) => !(o instanceof ProfilesBusyError));
    const again = last < 0 ? first : (outcomes[last] as typeof first);
    expect(catalog.resolve(last < 0 ? copy(0) : texts[last]!)).toEqual(again);
    expect(catalog.resolve('topk:1').name).toBe('topk:1');
    // The next second has its share again.
    await new Promise((r) => setTimeout(r, 1_050));
    expect(catalog.resolve(copy(1000)).key).toMatch(/./);
  });
});

describe('kmoe serve and loaded profiles', () => {
  let server: ServeProcess | undefined;
  afterAll(async () => {
    if (server) expect(await server.stop()).toBe(0);
  });

  it('/v1/models and the unknown-profile error name each loaded profile once, by file name', async () => {
    // `--routing recommended` is the shipped file's absolute path; --profiles names it relatively.
    server = await startServe([
      '--workers',
      '0',
      '--routing',
      'recommended',
      '--profiles',
      'profiles/recommended.json',
    ]);
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as {
      data: { kmoe: { profiles: string[]; profile_digests: Record<string, string> } }[];
    };
    expect(models.data[0]!.kmoe.profiles).toEqual(['recommended.json']);
    expect(Object.keys(models.data[0]!.kmoe.profile_digests)).toEqual(['recommended.json']);
    const complete = (routing: string) =>
      fetch(`${server!.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny-mixtral', prompt: 'a', max_tokens: 1, kmoe: { routing } }),
      });
    const res = await complete('other.json');
    expect(res.status).toBe(400);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ error: { code: 'unknown_routing_profile' } });
    expect(text).toMatch(
      /a request may name a loaded profile by its listed name \(recommended\.json\) or its path relative/,
    );
    // Spellings of the loaded path relative to the server's directory (it runs in ROOT), its file
    // name and its shipped name; the absolute path is refused (it would confirm where ROOT is).
    const absolute = await complete(path.join(ROOT, 'profiles/recommended.json'));
    expect(absolute.status).toBe(400);
    expect(await absolute.json()).toMatchObject({ error: { code: 'unknown_routing_profile' } });
    for (const routing of [
      'profiles/recommended.json',
      './profiles/recommended.json',
      'recommended.json',
      'recommended',
    ]) {
      const ok = await complete(routing);
      const answer = await ok.text();
      expect(ok.status, `${routing}: ${answer}`).toBe(200);
      expect(answer).not.toContain(ROOT);
    }
    expect(text).not.toContain(ROOT);
  });
});
