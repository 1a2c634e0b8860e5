// Commands to load or unload experts on a running worker (`kmoe cluster rebalance`), carried by a
// BullMQ queue per worker in the registry's Redis: durable (a command survives the rebalancer
// exiting, and a worker busy loading picks up the next one when done), one at a time per worker,
// with a result or failure the sender waits for. Worker and rebalancer both import this; nothing
// else names the queue or its job schema.

import type { RedisOptions } from 'bullmq';
import { z } from 'zod';
import { DEFAULT_PREFIX } from './keys.js';

/** BullMQ's key prefix: under the registry's, apart from the worker records (`kmoe:worker:*`). */
export function jobPrefix(prefix = DEFAULT_PREFIX): string {
  return `${prefix}jobs`;
}

/** The queue a worker takes its expert commands from (BullMQ queue names may not contain ':'). */
export function expertQueueName(workerId: string): string {
  return `experts-${workerId.replace(/:/g, '_')}`;
}

export const expertJobSchema = z.object({
  op: z.enum(['load', 'unload']),
  experts: z
    .array(z.number().int().nonnegative())
    .min(1)
    .max(1 << 16),
  /** The model the sender planned for: a worker of another model refuses the command. */
  fingerprint: z.string(),
});
export type ExpertJob = z.infer<typeof expertJobSchema>;

export const expertJobResultSchema = z.object({
  /** The experts the worker holds after the command. */
  experts: z.array(z.number().int().nonnegative()),
  seconds: z.number().nonnegative(),
});
export type ExpertJobResult = z.infer<typeof expertJobResultSchema>;

/**
 * Connection options for BullMQ from a redis:// or rediss:// URL (ioredis reads credentials, db
 * and TLS from it): BullMQ opens its own connections (a worker's blocking one included) and needs
 * commands to wait through a Redis outage rather than fail after a retry (maxRetriesPerRequest null).
 */
export function jobConnection(url: string, ca?: string): RedisOptions {
  // `ca` (--redis-ca): as for the registry connection, a private CA for rediss://, never no check.
  return { url, maxRetriesPerRequest: null, ...(ca === undefined ? {} : { tls: { ca } }) };
}
