// Past leaves replayed to a late listener (serve's followMembership, ClusterHealth.watch), which
// applies them and then joins the members it does not know, must leave it with the members, by
// text (the engine and the health know workers by the text the member went by). From a review of
// a version that kept past leaves by canonical URL: a worker back spelt otherwise got a second slot,
// and one that then left for good kept its first slot forever.

import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisMembership } from '../../../../coordinator/cluster/registry/redis-membership.js';
import { until as waitUntil } from '../../../helpers/log-lines.js';
import { type RedisServer, startRedis } from '../../../helpers/redis-server.js';
import { RECORD_FINGERPRINT, workerRecordJson } from '../../../helpers/worker-record.js';

let redis: RedisServer;
let client: Redis;
let membership: RedisMembership | undefined;

async function start(): Promise<RedisMembership> {
  membership = await RedisMembership.start({
    url: redis.url,
    fingerprint: RECORD_FINGERPRINT,
    numExperts: 8,
    pollMs: 200,
    log: { info: () => {}, warn: () => {} },
  });
  return membership;
}

async function leave(id: string): Promise<void> {
  await client.del(`kmoe:worker:${id}`);
  await client.publish('kmoe:events', JSON.stringify({ event: 'leave', id }));
}

const until = (what: string, check: () => boolean) => waitUntil(what, check, () => '');

/** What serve's followMembership does to the engine's URL set (exact text, as RemoteExpertBackend). */
function lateEngineSet(m: RedisMembership, placementAtStart: readonly string[]): Set<string> {
  const engine = new Set(placementAtStart);
  const known = new Set(placementAtStart);
  m.onLeave((e) => engine.delete(e.url));
  for (const u of m.members()) if (!known.has(u)) engine.add(u);
  return engine;
}

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
});
afterEach(async () => {
  await membership?.close();
  membership = undefined;
  await client.flushall();
});
afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
});

describe('a worker that came back spelt otherwise while the engine started', () => {
  const T1 = 'ws://127.0.0.1:7002';
  const T2 = 'WS://127.0.0.1:7002/';

  /** Worker a at T1 leaves, and comes back as b at T2: the engine started with T1 meanwhile. */
  async function backSpeltOtherwise(): Promise<RedisMembership> {
    await client.set('kmoe:worker:a', workerRecordJson({ id: 'a', url: T1 }), 'PX', 60_000);
    const m = await start();
    await until('a member', () => m.members().length === 1);
    await leave('a');
    await until('a to leave', () => m.members().length === 0);
    await client.set('kmoe:worker:b', workerRecordJson({ id: 'b', url: T2 }), 'PX', 60_000);
    await until('b to join', () => m.members().length === 1);
    return m;
  }

  it('leave T1, join T2: the late listener ends with T2 alone, not a second slot for one worker', async () => {
    const m = await backSpeltOtherwise();
    expect(m.members()).toEqual([T2]);
    const engine = lateEngineSet(m, [T1]);
    // The members ([T2]); with leaves kept by canonical URL the T1 slot stayed too.
    expect([...engine]).toEqual([T2]);
  });

  it('leave T1, join T2, leave T2: the T1 leave is replayed, so no slot stays for good', async () => {
    const m = await backSpeltOtherwise();
    await leave('b');
    await until('b to leave', () => m.members().length === 0);
    const replayed: string[] = [];
    m.onLeave((e) => replayed.push(e.url));
    // The worker is gone for good; the engine started with T1 must be told T1 left.
    expect(replayed).toContain(T1);
  });
});
