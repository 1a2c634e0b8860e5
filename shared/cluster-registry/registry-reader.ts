// Reads the registry: every live worker record (SCAN + MGET; the TTL makes absence mean gone) and
// the per-expert load the workers report. Used by coordinators (membership, status) and by workers
// choosing `--experts auto`.

import type { Redis } from 'ioredis';
import { DEFAULT_PREFIX, registryKeys } from './keys.js';
import { parseWorkerRecord, type WorkerRecord } from './record.js';

/** Every worker record in the registry, sorted by id (records that do not parse are skipped). */
export async function readWorkers(redis: Redis, prefix = DEFAULT_PREFIX): Promise<WorkerRecord[]> {
  const keys = registryKeys(prefix);
  const found = new Set<string>();
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', keys.workerPattern, 'COUNT', 200);
    for (const k of batch) found.add(k);
    cursor = next;
  } while (cursor !== '0');
  if (found.size === 0) return [];
  const names = [...found].sort();
  const values = await redis.mget(...names);
  const records: WorkerRecord[] = [];
  for (const v of values) {
    const r = v === null ? undefined : parseWorkerRecord(v);
    if (r) records.push(r);
  }
  return records.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
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
