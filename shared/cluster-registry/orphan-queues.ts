// The command queues (expert-jobs.ts) of workers that are gone. A worker that stops deletes its
// own (ExpertCommands.deleteQueue), but one that is killed (SIGKILL, the OOM killer, a lost host)
// cannot: its queue's name holds a worker id no later process has, so its keys would stay in Redis
// for ever, one set per worker ever killed. A worker starting deletes the queues of ids that have
// no record.

import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { expertQueueName, jobPrefix } from './expert-jobs.js';
import { DEFAULT_PREFIX, registryKeys, workerIdOf } from './keys.js';
import { scanKeys } from './scan-keys.js';

/** `experts-` (expertQueueName) and the id's characters, up to the next ':' (none in a queue name). */
const QUEUE_NAME = /^(experts-[^:]*):/;

/**
 * The names of the command queues whose worker has no record. Queue keys are listed before records
 * are read: a worker registers before it creates its queue (worker/command.ts), so a queue seen
 * here has a record by the time records are read, unless that worker is gone (or its record
 * lapsed, which its next heartbeat mends; a queue deleted meanwhile is made again by the next
 * command sent to it, and its worker still takes it).
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

/** Deletes each named queue (BullMQ's obliterate, on `redis`); the names of those that failed, with why. */
export async function deleteQueues(
  redis: Redis,
  names: readonly string[],
  prefix = DEFAULT_PREFIX,
): Promise<{ name: string; error: string }[]> {
  const failed: { name: string; error: string }[] = [];
  // One at a time: a Redis holding thousands of them is not flooded, and a worker starting is
  // not slowed by a burst of scripts.
  for (const name of names) {
    const queue = new Queue(name, { connection: redis, prefix: jobPrefix(prefix) });
    queue.on('error', () => {});
    try {
      await queue.obliterate({ force: true });
    } catch (err) {
      failed.push({ name, error: (err as Error).message });
    } finally {
      await queue.close().catch(() => {});
    }
  }
  return failed;
}
