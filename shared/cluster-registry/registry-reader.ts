// Reads the registry: every live worker record (SCAN + MGET; the TTL makes absence mean gone) and
// the per-expert load the workers report. Used by coordinators (membership, status) and by workers
// choosing `--experts auto`.

import type { Redis } from 'ioredis';
import { DEFAULT_PREFIX, registryKeys } from './keys.js';
import { checkWorkerRecord, type WorkerRecord } from './record.js';
import { scanKeys } from './scan-keys.js';

/** Every worker record in the registry, sorted by id (records that do not parse are skipped). */
export async function readWorkers(redis: Redis, prefix = DEFAULT_PREFIX): Promise<WorkerRecord[]> {
  return (await readRegistry(redis, prefix)).records.map((r) => r.record);
}

/** A worker record and the key it was read from (which need not be the key its id names). */
export interface KeyedRecord {
  readonly key: string;
  readonly record: WorkerRecord;
}

/** A key under the worker pattern whose value is not a worker record. */
export interface UnreadableRecord {
  readonly key: string;
  /** Why, for people (may quote the value: quote it with `printable`). */
  readonly problem: string;
}

/** Every worker record in the registry with its key, sorted by id, and the keys whose value is none. */
export async function readRegistry(
  redis: Redis,
  prefix = DEFAULT_PREFIX,
): Promise<{ readonly records: KeyedRecord[]; readonly unreadable: UnreadableRecord[] }> {
  const keys = registryKeys(prefix);
  const names = (await scanKeys(redis, keys.workerPattern)).sort();
  if (names.length === 0) return { records: [], unreadable: [] };
  const values = await redis.mget(...names);
  const records: KeyedRecord[] = [];
  const unreadable: UnreadableRecord[] = [];
  values.forEach((v, i) => {
    // Null: the key expired between SCAN and MGET.
    if (v === null) return;
    const r = checkWorkerRecord(v);
    if (typeof r === 'string') unreadable.push({ key: names[i]!, problem: r });
    else records.push({ key: names[i]!, record: r });
  });
  records.sort((a, b) => (a.record.id < b.record.id ? -1 : a.record.id > b.record.id ? 1 : 0));
  return { records, unreadable };
}

/** Per expert of the model: its holders (ready workers) and the pairs/s they report for it. */
export interface ExpertView {
  readonly expert: number;
  readonly holders: readonly string[];
  readonly pairsPerSec: number;
}

export function expertView(workers: readonly WorkerRecord[], numExperts: number): ExpertView[] {
  const holders: string[][] = Array.from({ length: numExperts }, () => []);
  const load = new Float64Array(numExperts);
  for (const w of workers) {
    if (w.status === 'draining') continue;
    for (const e of w.experts) if (e < numExperts) holders[e]!.push(w.id);
    for (const [e, p] of w.load.experts) if (e < numExperts) load[e]! += p;
  }
  return holders.map((h, e) => ({ expert: e, holders: h, pairsPerSec: load[e]! }));
}

/**
 * What an `--experts auto` worker should load: experts no worker holds (ascending) first, then
 * replicas of the busiest experts (pairs/s, then fewest holders, then index), `count` in all.
 */
export function chooseAutoExperts(view: readonly ExpertView[], count: number): number[] {
  const uncovered = view.filter((v) => v.holders.length === 0).map((v) => v.expert);
  const rest = view
    .filter((v) => v.holders.length > 0)
    .sort(
      (a, b) => b.pairsPerSec - a.pairsPerSec || a.holders.length - b.holders.length || a.expert - b.expert,
    )
    .map((v) => v.expert);
  return [...uncovered, ...rest].slice(0, count).sort((a, b) => a - b);
}
