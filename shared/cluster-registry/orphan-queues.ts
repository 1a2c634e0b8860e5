// The command queues (expert-jobs.ts) of workers that are gone. A worker that stops deletes its
// own (ExpertCommands.deleteQueue), but one that is killed (SIGKILL, the OOM killer, a lost host)
// cannot: its queue's name holds a worker id no later process has, so its keys would stay in Redis
// for ever, one set per worker ever killed. A worker starting deletes, in the background, the
// queues of ids that have had no record for ORPHAN_GRACE_MS and hold no command.
//
// A missing record alone does not make a worker gone: a worker paused (a VM migration, a swap
// storm) or cut off from Redis for longer than the record's TTL is alive, and so are all workers
// after a Redis restart that kept the queues (persistence) but whose records lapsed while it was
// down. Deleting such a queue with a command in it lost the command (a review: the rebalancer
// waited out its --command-timeout, 600 s by default, and the worker never loaded its experts).
// So a queue goes only if its worker's record is missing at two reads a grace apart and it holds no
// job; one deleted while its worker lives is made again by the next command sent to it.

import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { waitUnlessAborted } from '../runtime/abortable-wait.js';
import { expertQueueName, jobPrefix } from './expert-jobs.js';
import { DEFAULT_PREFIX, registryKeys, WORKER_TTL_MS, workerIdOf } from './keys.js';
import { scanKeys } from './scan-keys.js';

/** How long a queue's worker must have had no record before its queue is deleted. */
export const ORPHAN_GRACE_MS = 6 * WORKER_TTL_MS;

/** `experts-` (expertQueueName) and the id's characters, up to the next ':' (none in a queue name). */
const QUEUE_NAME = /^(experts-[^:]*):/;

/** The jobs a queue may hold that some worker would still take (BullMQ's states). */
const PENDING = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children'] as const;

/**
 * The names of the command queues whose worker has no record now. Queue keys are listed before
 * records are read: a worker registers before it creates its queue (worker/command.ts), so a queue
 * seen here has a record by the time records are read, unless its worker is gone or its record
 * lapsed.
 */
export async function orphanQueues(redis: Redis, prefix = DEFAULT_PREFIX): Promise<string[]> {
  const keyPrefix = `${jobPrefix(prefix)}:`;
  const queues = new Set<string>();
  for (const key of await scanKeys(redis, `${keyPrefix}experts-*`)) {
    const m = QUEUE_NAME.exec(key.slice(keyPrefix.length));
    if (m) queues.add(m[1]!);
  }
  if (queues.size === 0) return [];
  // Every key under the worker pattern counts, a record that does not parse too: it may be a
  // worker of another release, whose queue is its own business.
  for (const key of await scanKeys(redis, registryKeys(prefix).workerPattern))
    queues.delete(expertQueueName(workerIdOf(key, prefix)));
  return [...queues].sort();
}

export interface SweepOutcome {
  /** Queues found without a record at the first read. */
  readonly found: number;
  /** Deleted by this sweep. */
  readonly deleted: number;
  /** Left: their worker has no record, but they hold commands. */
  readonly busy: number;
  /** Left: their worker has a record again (it was alive: paused, or cut off from Redis). */
  readonly returned: number;
  readonly failed: readonly { readonly name: string; readonly error: string }[];
}

/**
 * Deletes the queues of workers with no record at two reads `graceMs` apart that hold no job. Stops
 * at `signal` (a worker leaving), between queues. `onFound` is told the first read's queues.
 */
export async function sweepOrphanQueues(
  redis: Redis,
  o: {
    readonly prefix?: string;
    readonly graceMs: number;
    readonly signal: AbortSignal;
    readonly onFound?: (names: readonly string[]) => void;
  },
): Promise<SweepOutcome> {
  const prefix = o.prefix ?? DEFAULT_PREFIX;
  const first = await orphanQueues(redis, prefix);
  const outcome = {
    found: first.length,
    deleted: 0,
    busy: 0,
    returned: 0,
    failed: [] as { name: string; error: string }[],
  };
  if (first.length === 0) return outcome;
  o.onFound?.(first);
  if (!(await waitUnlessAborted(o.graceMs, o.signal, { unref: true }))) return outcome;
  const still = new Set(await orphanQueues(redis, prefix));
  // One at a time: a Redis holding thousands of them is not flooded.
  for (const name of first) {
    if (o.signal.aborted) break;
    if (!still.has(name)) {
      outcome.returned++;
      continue;
    }
    // skipVersionCheck: else BullMQ asks Redis for INFO per queue and, under some eviction
    // policies, prints a warning per queue (5,003 lines for 5,000 queues in a review).
    const queue = new Queue(name, { connection: redis, prefix: jobPrefix(prefix), skipVersionCheck: true });
    queue.on('error', () => {});
    try {
      const counts = await queue.getJobCounts(...PENDING);
      if (Object.values(counts).some((n) => n > 0)) {
        outcome.busy++;
        continue;
      }
      // Not forced: a job made active meanwhile makes it fail rather than vanish. A job added to
      // a queue whose worker is stopped, in the milliseconds between the count and the delete, is
      // lost (its sender fails at its timeout): a review measured that window at 1.4 ms median.
      await queue.obliterate();
      outcome.deleted++;
    } catch (err) {
      // Another worker starting may have deleted it meanwhile: not a failure if nothing is left.
      if ((await scanKeys(redis, `${jobPrefix(prefix)}:${name}:*`)).length > 0) {
        // obliterate pauses the queue before it deletes: one it failed to delete (a job made active
        // meanwhile: its worker lives) is resumed, or that worker would take no command again.
        await queue.resume().catch(() => {});
        outcome.failed.push({ name, error: (err as Error).message });
      }
    } finally {
      await queue.close().catch(() => {});
    }
  }
  return outcome;
}
