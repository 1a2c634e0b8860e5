// A registry record as a worker writes it (shared/cluster-registry/record.ts), for tests that put
// records in a real Redis by hand: a ready fp32 cpu worker of all 8 experts, fields overridden.

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
