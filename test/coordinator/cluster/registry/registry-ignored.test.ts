// What the coordinator's registry membership logs about the records it ignores, against a real
// redis-server: a record is named by the Redis key it was read from (not the key its id would
// have), and its key and reason are quoted on one line with bidi controls escaped.

import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisMembership } from '../../../../coordinator/cluster/registry/redis-membership.js';
import { NO_LOAD, type WorkerRecord } from '../../../../shared/cluster-registry/record.js';
import { type RedisServer, startRedis } from '../../../helpers/redis-server.js';

const FINGERPRINT = 'a'.repeat(64);

let redis: RedisServer;
let client: Redis;
let membership: RedisMembership | undefined;
const warnings: string[] = [];

function record(fields: Partial<WorkerRecord>): string {
  const r: WorkerRecord = {
    id: 'w',
    url: 'ws://127.0.0.1:1',
    status: 'ready',
    experts: [0, 1, 2, 3, 4, 5, 6, 7],
    numExperts: 8,
    device: 'cpu',
    expertWeights: 'fp32',
    threads: 1,
    fingerprint: FINGERPRINT,
    startedAt: Date.now(),
    heartbeatAt: Date.now(),
    load: NO_LOAD,
    ...fields,
  };
  return JSON.stringify(r);
}

async function start(): Promise<RedisMembership> {
  membership = await RedisMembership.start({
    url: redis.url,
    fingerprint: FINGERPRINT,
    numExperts: 8,
    log: { info: () => {}, warn: (m) => warnings.push(m) },
  });
  return membership;
}

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
});

afterEach(async () => {
  await membership?.close();
  membership = undefined;
  await client.flushall();
  warnings.length = 0;
});

afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
});

describe('a record the membership ignores', () => {
  it('is named by the key it was read from, not by the key its id names', async () => {
    await client.set(
      'kmoe:worker:forged-key',
      record({ id: 'victim', fingerprint: 'f'.repeat(64) }),
      'PX',
      60_000,
    );
    await client.set('kmoe:worker:alias', record({ id: 'other', experts: [9] }), 'PX', 60_000);
    await start();
    // In the order of the records' ids (other, victim).
    expect(warnings).toEqual([
      'registry: ignoring record kmoe:worker:alias: lists expert 9, but the model has 8',
      expect.stringMatching(
        /^registry: ignoring record kmoe:worker:forged-key: serves another model \(fingerprint f{16}, this coordinator's a{16}\)$/,
      ),
    ]);
  });

  it('has its key and reason quoted with bidi controls escaped', async () => {
    await client.set('kmoe:worker:evil\u202egnp.exe', 'nope \u2066\u202e}', 'PX', 60_000);
    await start();
    expect(warnings).toEqual([
      expect.stringMatching(/^registry: ignoring record kmoe:worker:evil\\u202egnp\.exe: not JSON \(/),
    ]);
    expect(warnings[0]).toContain('nope \\u2066\\u202e}');
    expect(/[\u202a-\u202e\u2066-\u2069]/.test(warnings[0]!)).toBe(false);
  });
});
