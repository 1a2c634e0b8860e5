// `kmoe serve --workers ws://a,ws://b` with two real worker processes it did not start: when one is
// killed, the cluster's health (fed by the engine thread's dropped connection) makes /ready answer
// 503 naming the experts that lost their only worker, and generation is refused with 503
// `experts_unavailable` naming them too, instead of failing inside a step with a 500.

import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type WorkerProcess } from '../../helpers/worker-process.js';
import { type ServeProcess, startServe } from './serve-process.js';

let workers: WorkerProcess[] = [];
let server: ServeProcess;
let client: OpenAI;

beforeAll(async () => {
  workers = await Promise.all([startWorker('0-3'), startWorker('4-7')]);
  server = await startServe(['--workers', workers.map((w) => w.url).join(','), '--wire', 'fp32']);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  await server?.stop();
  await Promise.all(workers.map((w) => w.stop()));
});

describe('kmoe serve with remote workers', () => {
  it('is ready and generates while both workers are up', async () => {
    const ready = await fetch(`${server.url}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', experts: { covered: true } });
    const res = await client.completions.create({
      model: 'tiny-mixtral',
      prompt: 'Hello',
      max_tokens: 2,
      temperature: 0,
    });
    expect(res.usage?.completion_tokens).toBe(2);
  });

  it('turns unready naming the missing experts when a worker is killed, and refuses with 503', async () => {
    const killed = workers[1]!;
    killed.child.kill('SIGKILL');
    let ready = await fetch(`${server.url}/ready`);
    for (const deadline = Date.now() + 10_000; ready.status === 200 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      ready = await fetch(`${server.url}/ready`);
    }
    expect(ready.status).toBe(503);
    const body = (await ready.json()) as {
      status: string;
      experts: { covered: boolean; missing: number[]; detail: string };
    };
    expect(body.status).toBe('not_ready');
    expect(body.experts.covered).toBe(false);
    expect(body.experts.missing).toEqual([4, 5, 6, 7]);
    expect(body.experts.detail).toContain('experts 4-7 have no live worker');
    expect(body.experts.detail).toContain(killed.url);

    const err = await client.completions
      .create({ model: 'tiny-mixtral', prompt: 'x', max_tokens: 2 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const apiError = err as InstanceType<typeof OpenAI.APIError>;
    expect(apiError.status).toBe(503);
    expect(apiError.code).toBe('experts_unavailable');
    expect(apiError.message).toContain('experts 4-7');
    // The process answers; only readiness changed.
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });
});
