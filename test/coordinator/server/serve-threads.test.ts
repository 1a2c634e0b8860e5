// kmoe serve's onnxruntime threads: by default all cores but one (one stays with the HTTP server),
// at least 1; --threads overrides it. The startup log names the count the engine was built with.

import os from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { type ServeProcess, startServe } from './serve-process.js';

let server: ServeProcess | undefined;

afterEach(async () => {
  await server?.stop();
  server = undefined;
});

function servingRecord(p: ServeProcess): Record<string, unknown> | undefined {
  return p
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((r) => r['msg'] === 'serving');
}

async function completes(p: ServeProcess): Promise<number> {
  const res = await fetch(`${p.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny-mixtral', prompt: 'def f(x):', max_tokens: 4, temperature: 0 }),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { usage: { completion_tokens: number } };
  return body.usage.completion_tokens;
}

describe('kmoe serve threads', () => {
  it('defaults to the cores but one, at least 1, and serves with it', async () => {
    server = await startServe(['--workers', '0'], undefined, undefined, { defaultThreads: true });
    expect(servingRecord(server)).toMatchObject({ threads: Math.max(1, os.availableParallelism() - 1) });
    expect(await completes(server)).toBe(4);
  });

  it('takes --threads as given', async () => {
    server = await startServe(['--workers', '0', '--threads', '3']);
    expect(servingRecord(server)).toMatchObject({ threads: 3 });
    expect(await completes(server)).toBe(4);
  });
});
