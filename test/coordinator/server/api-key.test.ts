// `kmoe serve --api-key-file` with its default local workers: every /v1 request needs the key
// (401 with an OpenAI-style error otherwise, the official client included), the probes and the
// scrape stay open, and the local workers are authenticated with a token of their own although
// no token is in the environment.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../helpers/cli.js';
import { MODEL_DIR } from '../../helpers/paths.js';
import { type ServeProcess, startServe } from './serve-process.js';

const KEY = 'sk-kmoe-test-key-0123456789';
const MODEL = 'tiny-mixtral';

let dir: string;
let server: ServeProcess;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kmoe-api-key-'));
  const keyFile = path.join(dir, 'key');
  await writeFile(keyFile, `${KEY}\n`);
  const { KMOE_CLUSTER_TOKEN: _unused, ...env } = process.env;
  server = await startServe(['--api-key-file', keyFile], MODEL_DIR, env);
});

afterAll(async () => {
  if (server) expect(await server.stop()).toBe(0);
  await rm(dir, { recursive: true, force: true });
});

async function get(p: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}${p}`, { headers });
  return { status: res.status, headers: res.headers, body: (await res.json().catch(() => null)) as unknown };
}

describe('serve --api-key-file', () => {
  it('answers /v1 without the key, or with another, with 401 invalid_api_key', async () => {
    for (const [headers, message] of [
      [{}, /no API key provided: send it in the header "Authorization: Bearer KEY"/],
      [{ authorization: 'Bearer sk-wrong' }, /incorrect API key provided/],
      [{ authorization: `Basic ${KEY}` }, /no API key provided/],
      [{ authorization: `Bearer ${KEY}x` }, /incorrect API key provided/],
    ] as const) {
      for (const p of ['/v1/models', '/v1/nope']) {
        const r = await get(p, headers);
        expect(r.status, `${p} ${JSON.stringify(headers)}`).toBe(401);
        expect(r.headers.get('www-authenticate')).toBe('Bearer');
        expect(r.body).toEqual({
          error: {
            message: expect.stringMatching(message),
            type: 'invalid_request_error',
            param: null,
            code: 'invalid_api_key',
          },
        });
      }
    }
    const post = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: 'The', max_tokens: 1 }),
    });
    expect(post.status).toBe(401);
    // The key is case-sensitive; the scheme is not (RFC 7235).
    expect((await get('/v1/models', { authorization: `bearer ${KEY}` })).status).toBe(200);
    expect((await get('/v1/models', { authorization: `Bearer ${KEY.toUpperCase()}` })).status).toBe(401);
  });

  it('keeps /health, /ready and /metrics open for probes and scrapers', async () => {
    expect((await get('/health')).status).toBe(200);
    expect((await get('/ready')).status).toBe(200);
    const metrics = await fetch(`${server.url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/kmoe_requests_total\{endpoint="models",status="401"\} \d+/);
  });

  it('serves the openai client that sends the key, and refuses one that sends another', async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0 });
    const done = await client.completions.create({
      model: MODEL,
      prompt: 'The',
      max_tokens: 4,
      temperature: 0,
    });
    expect(done.choices[0]!.text.length).toBeGreaterThan(0);
    expect(done.usage?.completion_tokens).toBe(4);
    expect((await client.models.list()).data.map((m) => m.id)).toEqual([MODEL]);

    const wrong = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
    const err = await wrong.models.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((err as InstanceType<typeof OpenAI.AuthenticationError>).status).toBe(401);
    expect((err as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe('invalid_api_key');
  });

  it('authenticated its own local workers with a token of their own', () => {
    const records = server
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const proving = records.filter((r) => r['msg'] === 'coordinators must prove the cluster token');
    expect(proving.map((r) => r['worker']).sort()).toEqual([0, 1]);
    const accepted = records.filter((r) => r['msg'] === 'accepted coordinator');
    expect(accepted).toHaveLength(2);
    for (const r of accepted) expect(r['authenticated']).toBe(true);
    const serving = records.find((r) => r['msg'] === 'serving');
    expect(serving).toMatchObject({ apiKey: 'required on /v1', workerAuth: 'cluster token' });
    expect(server.stderr()).not.toContain(KEY);
  });
});

describe('serve API key options', () => {
  it('refuses --api-key with --api-key-file, and an empty key file (exit 2)', async () => {
    const empty = path.join(dir, 'empty');
    await writeFile(empty, '\n');
    const [both, blank] = await Promise.all([
      runCli(['serve', '--model', MODEL_DIR, '--api-key', 'a', '--api-key-file', empty]),
      runCli(['serve', '--model', MODEL_DIR, '--api-key-file', empty]),
    ]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--api-key and --api-key-file both given; use one/);
    expect(blank.code).toBe(2);
    expect(blank.stderr).toMatch(/--api-key-file .*empty is empty/);
  });
});
