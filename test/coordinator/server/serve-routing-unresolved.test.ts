// The catalog validates every routing before a request is admitted, so an engine that then cannot
// resolve one (here: a profile file loaded with --profiles and deleted while the server runs, which
// the engine reads on first use) is the server's fault: that request alone ends with a 500
// engine_error, and the request decoding beside it in the same steps completes.

import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../../helpers/paths.js';
import { type ServeProcess, startServe } from './serve-process.js';

let server: ServeProcess;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'kmoe-unresolved-'));
  const profile = path.join(dir, 'vanishing.json');
  copyFileSync(path.join(ROOT, 'profiles/skip-quality-0.6pct.json'), profile);
  server = await startServe(['--workers', '0', '--profiles', profile]);
  rmSync(profile);
});

afterAll(async () => {
  expect(await server?.stop()).toBe(0);
  rmSync(dir, { recursive: true, force: true });
});

async function post(body: object): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny-mixtral', temperature: 0, ...body }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('a routing the engine cannot resolve', () => {
  it('ends its request alone with a 500; the request beside it completes', async () => {
    const long = post({ prompt: 'The', max_tokens: 48, kmoe: { ignore_eos: true } });
    // Sent while the first decodes, so both are in the same engine steps.
    await new Promise((r) => setTimeout(r, 30));
    const bad = await post({ prompt: 'The', max_tokens: 4, kmoe: { routing: 'vanishing.json' } });
    expect(bad.status).toBe(500);
    expect(bad.json['error']).toMatchObject({ code: 'engine_error' });
    expect(String((bad.json['error'] as { message: string }).message)).toMatch(/vanishing\.json/);
    const good = await long;
    expect(good.status).toBe(200);
    expect((good.json['usage'] as { completion_tokens: number }).completion_tokens).toBe(48);
  });
});
