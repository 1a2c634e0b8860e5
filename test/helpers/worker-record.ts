// A registry record as a worker writes it (shared/cluster-registry/record.ts), for tests that put
// records in a real Redis by hand: a ready fp32 cpu worker of all 8 experts, fields overridden; or
// a copy of a real worker's record under another id and URL.

import type { Redis } from 'ioredis';
import { NO_LOAD, type WorkerRecord } from '../../shared/cluster-registry/record.js';

/** The model fingerprint the records claim (the membership under test is started with it). */
export const RECORD_FINGERPRINT = 'a'.repeat(64);

/** The record's JSON, as stored under its key. */
export function workerRecordJson(fields: Partial<WorkerRecord>): string {
  const r: WorkerRecord = {
    id: 'w',
    url: 'ws://127.0.0.1:1',
    status: 'ready',
    experts: [0, 1, 2, 3, 4, 5, 6, 7],
    numExperts: 8,
    device: 'cpu',
    expertWeights: 'fp32',
    threads: 1,
    fingerprint: RECORD_FINGERPRINT,
    startedAt: Date.now(),
    heartbeatAt: Date.now(),
    load: NO_LOAD,
    ...fields,
  };
  return JSON.stringify(r);
}

/**
 * Registers `url` under `id` with a copy of the first worker record found in `redis` (its model,
 * its experts), a heartbeat now and a TTL of a minute: another worker as far as coordinators know.
 */
export async function forgeRecordLike(redis: Redis, id: string, url: string): Promise<void> {
  const keys = await redis.keys('kmoe:worker:*');
  const base = JSON.parse((await redis.get(keys[0]!))!) as Record<string, unknown>;
  await redis.set(
    `kmoe:worker:${id}`,
    JSON.stringify({ ...base, id, url, heartbeatAt: Date.now() }),
    'PX',
    60_000,
  );
}
