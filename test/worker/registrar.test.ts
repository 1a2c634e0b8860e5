// The worker's registrar against a real redis-server: concurrent `--experts auto` claims split the
// experts, a claim stays registered (heartbeat) while the experts load for longer than the TTL,
// and deregistering deletes the record and announces the leave on the events channel. A worker
// given its experts registers them as loading before it loads them, so an auto worker choosing
// meanwhile takes others (real worker processes).

import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registryKeys } from '../../shared/cluster-registry/keys.js';
import { parseRegistryEvent } from '../../shared/cluster-registry/record.js';
import { readWorkers } from '../../shared/cluster-registry/registry-reader.js';
import { Registrar } from '../../worker/registrar.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { startWorker, type WorkerProcess } from '../helpers/worker-process.js';

let server: RedisServer;
const clients: Redis[] = [];

function client(): Redis {
  const c = new Redis(server.url);
  clients.push(c);
  return c;
}

function registrar(redis: Redis, id: string, ttlMs: number): Registrar {
  return new Registrar({
    redis,
    identity: {
      id,
      url: '',
      experts: [],
      numExperts: 8,
      device: 'cpu',
      expertWeights: 'fp32',
      threads: 1,
      fingerprint: 'model-a',
      startedAt: Date.now(),
    },
    heartbeatMs: ttlMs / 4,
    ttlMs,
    onWarn: () => {},
  });
}

beforeAll(async () => {
  server = await startRedis();
});

afterAll(async () => {
  for (const c of clients) c.disconnect();
  await server?.stop();
});

describe('Registrar', () => {
  it('splits concurrent auto claims, keeps loading claims alive past the TTL, deregisters with an event', async () => {
    // Heartbeats every TTL/4: a 1.5 s TTL survives a loaded machine (another test file beside this one).
    const TTL = 1500;
    const a = registrar(client(), 'a', TTL);
    const b = registrar(client(), 'b', TTL);
    const [ea, eb] = await Promise.all([a.claimAuto(4, 8), b.claimAuto(4, 8)]);
    expect([...ea, ...eb].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);

    // Three TTLs of "loading": the heartbeat keeps both claims.
    await new Promise((r) => setTimeout(r, 3 * TTL));
    const reader = client();
    const records = await readWorkers(reader);
    expect(records.map((r) => [r.id, r.status, r.experts])).toEqual([
      ['a', 'loading', ea],
      ['b', 'loading', eb],
    ]);

    const sub = client();
    const events: string[] = [];
    sub.on('message', (_c: string, m: string) => events.push(m));
    await sub.subscribe(registryKeys().events);
    await a.deregister();
    expect(await reader.exists(registryKeys().worker('a'))).toBe(0);
    for (const deadline = Date.now() + 5000; events.length === 0 && Date.now() < deadline; )
      await new Promise((r) => setTimeout(r, 10));
    expect(events.map(parseRegistryEvent)).toEqual([{ event: 'leave', id: 'a' }]);

    await b.deregister();
    expect(await readWorkers(reader)).toEqual([]);
  });

  it('an explicit claim counts for auto claims made while it loads', async () => {
    const x = registrar(client(), 'x', 60_000);
    await x.claim([0, 1, 2, 3]);
    const y = registrar(client(), 'y', 60_000);
    expect(await y.claimAuto(4, 8)).toEqual([4, 5, 6, 7]);
    expect((await readWorkers(client())).map((r) => [r.id, r.status])).toEqual([
      ['x', 'loading'],
      ['y', 'loading'],
    ]);
    await Promise.all([x.deregister(), y.deregister()]);
  });

  it('a worker given --experts registers as loading before its weights load, and its command queue goes when it stops', async () => {
    const reader = client();
    const workers: WorkerProcess[] = [];
    const explicit = startWorker('0-3', ['--redis', server.url]);
    try {
      // Its first record, polled while it starts: before, the record appeared only once loaded.
      let first: { status: string; experts: readonly number[] } | undefined;
      for (const deadline = Date.now() + 60_000; first === undefined && Date.now() < deadline; ) {
        first = (await readWorkers(reader))[0];
        if (first === undefined) await new Promise((r) => setTimeout(r, 5));
      }
      expect(first).toMatchObject({ status: 'loading', experts: [0, 1, 2, 3] });
      workers.push(await explicit);
      workers.push(await startWorker('auto', ['--redis', server.url]));
      expect(workers[1]!.experts).toEqual([4, 5, 6, 7]);
      // Each has a command queue (kmoe cluster rebalance) named by its worker id, which no later
      // process has: a worker that stops deletes it, so Redis does not keep one per worker started.
      const ids = (await readWorkers(reader)).map((r) => r.id);
      const queueKeys = async () =>
        (await reader.keys('kmoe:jobs:*')).filter((k) => ids.some((id) => k.includes(id)));
      expect(await queueKeys()).not.toEqual([]);
      expect(await Promise.all(workers.map((w) => w.stop()))).toEqual([0, 0]);
      expect(await queueKeys()).toEqual([]);
    } finally {
      workers.push(
        ...(await Promise.allSettled([explicit])).flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])),
      );
      await Promise.all([...new Set(workers)].map((w) => w.stop()));
    }
  });

  it('a worker sent SIGTERM while Redis is down still stops (it stayed running for ever before)', async () => {
    const gone = await startRedis();
    const w = await startWorker('0-7', ['--redis', gone.url]);
    await gone.stop();
    // BullMQ's close and disconnect wait for Redis: each is bounded (2 s), then the process exits.
    expect(await w.stop()).toBe(0);
    expect(w.stderr()).toMatch(/expert command queue: Redis did not answer within 2000 ms; closing anyway/);
    expect(w.stderr()).toMatch(/Redis did not answer: exiting without closing the command queue connections/);
  }, 60_000);
});
