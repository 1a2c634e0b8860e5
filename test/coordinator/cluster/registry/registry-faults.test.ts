// Registry records that do not match the workers behind them (found by attacking the cluster):
// a record whose URL answers TCP but is no kmoe worker, and two records naming one URL, must not
// stop `kmoe serve --redis` from starting; a worker restarted at its old URL (new id, while its
// old record has not expired yet) must keep receiving work once the old record expires.

import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { greedyCompletion } from '../../../helpers/greedy-completion.js';
import { restartablePort } from '../../../helpers/ports.js';
import { type RedisServer, startRedis } from '../../../helpers/redis-server.js';
import { requestLoops } from '../../../helpers/request-loops.js';
import { startWorker, type WorkerProcess } from '../../../helpers/worker-process.js';
import { type ServeProcess, startServe } from '../../server/serve-process.js';

let redis: RedisServer;
let client: Redis;
const workers: WorkerProcess[] = [];
let server: ServeProcess | undefined;
let bPort: number;

function complete(): Promise<string> {
  return greedyCompletion(server!.url);
}

/** The record of the worker at `url`, as the registry holds it. */
async function recordOf(url: string): Promise<Record<string, unknown>> {
  const keys = await client.keys('kmoe:worker:*');
  for (const k of keys) {
    const r = JSON.parse((await client.get(k)) ?? '{}') as Record<string, unknown>;
    if (r['url'] === url) return r;
  }
  throw new Error(`no record for ${url}`);
}

/** Writes a forged record with a heartbeat now and a TTL. */
async function forge(id: string, fields: Record<string, unknown>, ttlMs = 60_000): Promise<void> {
  const base = await recordOf(workers[0]!.url);
  await client.set(
    `kmoe:worker:${id}`,
    JSON.stringify({ ...base, id, heartbeatAt: Date.now(), ...fields }),
    'PX',
    ttlMs,
  );
}

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  bPort = await restartablePort();
  workers.push(await startWorker('0-3', ['--redis', redis.url]));
  workers.push(await startWorker('4-7', ['--redis', redis.url, '--port', String(bPort)]));
});

afterAll(async () => {
  await server?.stop();
  await Promise.all(workers.map((w) => w.stop()));
  client?.disconnect();
  await redis?.stop();
});

describe('registry records that lie (real redis-server, workers, kmoe serve)', () => {
  it('serve starts despite a record at a non-worker port and a second record for one URL', async () => {
    // Redis' own port answers TCP but speaks no kmoe; the duplicate names worker B's URL.
    await forge('not-a-worker', { url: `ws://127.0.0.1:${redis.port}`, experts: [0] });
    await forge('b-twice', { url: workers[1]!.url, experts: [4, 5, 6, 7] });
    server = await startServe(['--redis', redis.url, '--wire', 'fp32']);
    expect((await fetch(`${server.url}/ready`)).status).toBe(200);
    expect((await complete()).length).toBeGreaterThan(0);
    await client.del('kmoe:worker:not-a-worker');
  });

  it('the duplicate record leaving does not take the URL a worker still serves out of routing', async () => {
    const baseline = await complete();
    await client.del('kmoe:worker:b-twice');
    // Past a registry poll: the leave of the duplicate id has been seen.
    const settled = new Promise((r) => setTimeout(r, 2500));
    const { results, errors } = await requestLoops(2, settled, () => complete());
    expect(errors).toEqual([]);
    for (const t of results) expect(t).toBe(baseline);
    expect((await fetch(`${server!.url}/ready`)).status).toBe(200);
  });

  it('a worker killed and restarted at its URL keeps receiving work after its old record expires', async () => {
    const baseline = await complete();
    const old = workers.pop()!;
    old.child.kill('SIGKILL');
    await old.stop();
    workers.push(await startWorker('4-7', ['--redis', redis.url, '--port', String(bPort)]));
    // Reconnected (same URL) before the old record's 5 s TTL ends; stream across that expiry.
    const deadline = Date.now() + 15_000;
    while ((await fetch(`${server!.url}/ready`)).status !== 200 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    const expired = new Promise((r) => setTimeout(r, 7000));
    const { results, errors } = await requestLoops(2, expired, () => complete());
    expect(errors).toEqual([]);
    expect(results.length).toBeGreaterThan(0);
    for (const t of results) expect(t).toBe(baseline);
    expect((await fetch(`${server!.url}/ready`)).status).toBe(200);
  });
});
