// What a worker publishes about itself in the registry, validated with a schema wherever it is read
// (a record is external input: another process, maybe another version, wrote it).

import { z } from 'zod';
import { MAX_WORKER_URL_CHARS, workerUrlProblem } from '../protocol/worker-url.js';

export const WORKER_STATUSES = ['loading', 'ready', 'draining'] as const;
export type WorkerStatus = (typeof WORKER_STATUSES)[number];

const load = z.object({
  /** (token, expert) pairs computed per second over the last heartbeat interval, all layers. */
  pairsPerSec: z.number().nonnegative(),
  /** Hidden states received per second (a token counts once per layer request). */
  tokensPerSec: z.number().nonnegative(),
  /** Pairs per second per expert held, summed over layers: [expert, pairs/s] for experts with traffic. */
  experts: z.array(z.tuple([z.number().int().nonnegative(), z.number().nonnegative()])).max(1 << 16),
  /** Pairs per second per (MoE layer, expert) held: [layer, expert, pairs/s] for those with traffic. */
  layers: z
    .array(
      z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative(), z.number().nonnegative()]),
    )
    .max(1 << 20),
});

/** Expert indices and load entries a record may list: far above any model's experts x layers. */
const MAX_LIST = 1 << 16;

export const workerRecordSchema = z.object({
  id: z.string().min(1).max(200),
  /** ws:// URL coordinators connect to (--advertise-url, or the listen address); empty while loading. */
  url: z
    .string()
    .max(MAX_WORKER_URL_CHARS)
    .superRefine((u, ctx) => {
      const problem = u === '' ? undefined : workerUrlProblem(u);
      if (problem !== undefined)
        ctx.addIssue({ code: 'custom', message: `must be a ws:// or wss:// URL (${problem})` });
    }),
  /** loading: experts claimed (by --experts auto), not yet serving; ready; draining: leaving. */
  status: z.enum(WORKER_STATUSES),
  experts: z.array(z.number().int().nonnegative()).max(MAX_LIST),
  numExperts: z.number().int().positive().max(MAX_LIST),
  device: z.string(),
  expertWeights: z.string(),
  threads: z.number().int().nonnegative(),
  /** The model fingerprint of the handshake: coordinators ignore workers of another model. */
  fingerprint: z.string(),
  /** Milliseconds since the epoch. */
  startedAt: z.number(),
  heartbeatAt: z.number(),
  load,
});

export type WorkerRecord = z.infer<typeof workerRecordSchema>;
export type WorkerLoad = z.infer<typeof load>;

export const NO_LOAD: WorkerLoad = { pairsPerSec: 0, tokensPerSec: 0, experts: [], layers: [] };

/** A record's JSON above this is not parsed (a real one is a few KiB; the registry is external input). */
export const MAX_RECORD_BYTES = 256 * 1024;

/** The record, or undefined when the JSON is too long, does not parse or does not match the schema. */
export function parseWorkerRecord(json: string): WorkerRecord | undefined {
  const r = checkWorkerRecord(json);
  return typeof r === 'string' ? undefined : r;
}

/**
 * The record, or why it is not one (for people; it may quote the record's own text, so quote it
 * with `printable` before logging it).
 */
export function checkWorkerRecord(json: string): WorkerRecord | string {
  if (json.length > MAX_RECORD_BYTES) return `larger than ${MAX_RECORD_BYTES} bytes`;
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    return `not JSON (${(err as Error).message})`;
  }
  const r = workerRecordSchema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  return `${issue.path.length === 0 ? 'the record' : issue.path.join('.')}: ${issue.message}`;
}

const event = z.object({ event: z.enum(['join', 'leave']), id: z.string() });
export type RegistryEvent = z.infer<typeof event>;

export function parseRegistryEvent(message: string): RegistryEvent | undefined {
  try {
    const r = event.safeParse(JSON.parse(message));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
