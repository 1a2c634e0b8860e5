// A registered worker's side of `kmoe cluster rebalance`: takes load/unload commands from its
// BullMQ queue, one at a time, and changes the experts it holds while it keeps serving.
// Load: sessions are built first, then the experts are announced (holdings notice to every
// coordinator, registry record). Unload: announced first, then, once every request accepted
// before is answered, the sessions are released. So no request finds a half-loaded expert, and a
// request sent on stale placement gets `not-held` and is re-sent by its coordinator to a replica.

import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  type ExpertJob,
  type ExpertJobResult,
  expertJobSchema,
  expertQueueName,
  jobConnection,
  jobPrefix,
} from '../shared/cluster-registry/expert-jobs.js';
import { ORPHAN_GRACE_MS, sweepOrphanQueues } from '../shared/cluster-registry/orphan-queues.js';
import { readWorkers } from '../shared/cluster-registry/registry-reader.js';
import { formatExpertSet } from '../shared/protocol/expert-set.js';
import type { Logger } from '../shared/runtime/logger.js';
import { listed } from '../shared/text/listed.js';
import type { ExpertCompute } from './expert-compute.js';
import type { Registrar } from './registrar.js';
import type { WorkerServer } from './server.js';

export interface ExpertCommandsOptions {
  readonly redisUrl: string;
  /** PEM CA for a rediss:// URL (--redis-ca). */
  readonly redisCa?: string;
  readonly prefix?: string;
  readonly registrar: Registrar;
  /** The registry connection: an unload checks that another ready worker holds each expert. */
  readonly redis: Redis;
  readonly compute: ExpertCompute;
  readonly server: WorkerServer;
  readonly log: Logger;
}

export class ExpertCommands {
  /** The command being applied, if any (settled either way). */
  private applying: Promise<unknown> = Promise.resolve();
  /** The start's deletion of gone workers' queues (settled either way). */
  private sweeping: Promise<unknown> = Promise.resolve();
  /** Stops that deletion (between queues) when the worker leaves. */
  private readonly stopSweep = new AbortController();
  /**
   * Redis did not answer a close: BullMQ's connections to it are still reconnecting (its disconnect
   * waits for a connection first), and they keep the process alive.
   */
  redisUnanswered = false;

  private constructor(
    private readonly bull: Worker<ExpertJob, ExpertJobResult>,
    private readonly o: ExpertCommandsOptions,
  ) {}

  static start(o: ExpertCommandsOptions): ExpertCommands {
    let commands: ExpertCommands | undefined;
    const bull = new Worker<ExpertJob, ExpertJobResult>(
      expertQueueName(o.registrar.id),
      async (job) => {
        const parsed = expertJobSchema.safeParse(job.data);
        if (!parsed.success) throw new Error(`not an expert command: ${parsed.error.message}`);
        const applied = apply(parsed.data, o);
        if (commands) commands.applying = applied.catch(() => {});
        return applied;
      },
      { connection: jobConnection(o.redisUrl, o.redisCa), prefix: jobPrefix(o.prefix), concurrency: 1 },
    );
    // BullMQ reports Redis trouble here; serving does not depend on this queue.
    bull.on('error', (err) => o.log.warn(`expert command queue: ${err.message}`));
    commands = new ExpertCommands(bull, o);
    commands.sweeping = sweepOrphans(o, commands.stopSweep.signal).catch((err: Error) =>
      o.log.warn(`command queues of gone workers not deleted: ${err.message}`),
    );
    return commands;
  }

  /**
   * Stops taking commands; one being applied finishes first (a load may take minutes). The rest is
   * Redis traffic, bounded like deleteQueue's: BullMQ's close waits through a Redis outage, and a
   * worker sent SIGTERM while Redis was down never left (measured: still running 10 minutes on).
   */
  async close(): Promise<void> {
    const closed = this.bull.close();
    await this.applying;
    // Bounded like the rest: it waits for Redis too, and what it has not deleted the next start will.
    this.stopSweep.abort();
    await within(this.sweeping, QUEUE_DELETE_MS);
    if ((await within(closed, QUEUE_DELETE_MS)).kind === 'late') {
      this.o.log.warn(
        `expert command queue: Redis did not answer within ${QUEUE_DELETE_MS} ms; closing anyway`,
      );
      // Not awaited past the bound either: it too waits for Redis.
      if ((await within(this.bull.disconnect(), QUEUE_DELETE_MS)).kind === 'late')
        this.redisUnanswered = true;
    }
  }

  /**
   * Deletes the queue, once closed and deregistered: its name holds this process's worker id, which
   * no later process has, so its keys would stay in Redis for ever, one set per worker ever started
   * (a command queued for it now could never be taken; its sender fails at its --command-timeout).
   * Bounded: BullMQ waits through a Redis outage, and a worker leaving must not.
   */
  async deleteQueue(): Promise<void> {
    const { redisUrl, redisCa, prefix, registrar, log } = this.o;
    const queue = new Queue(expertQueueName(registrar.id), {
      connection: jobConnection(redisUrl, redisCa),
      prefix: jobPrefix(prefix),
    });
    queue.on('error', () => {});
    try {
      const deleted = await within(queue.obliterate({ force: true }), QUEUE_DELETE_MS);
      if (deleted.kind === 'late')
        log.warn(`expert command queue not deleted: no answer from Redis within ${QUEUE_DELETE_MS} ms`);
      else if (deleted.kind === 'failed')
        log.warn(`expert command queue not deleted: ${(deleted.error as Error).message}`);
    } finally {
      if ((await within(queue.disconnect(), QUEUE_DELETE_MS)).kind === 'late') this.redisUnanswered = true;
    }
  }
}

/** How `p` ended within `ms`; when late it is not cancelled (and a later rejection is ignored). */
async function within(
  p: Promise<unknown>,
  ms: number,
): Promise<{ kind: 'done' } | { kind: 'failed'; error: unknown } | { kind: 'late' }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<{ kind: 'late' }>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'late' }), ms);
  });
  try {
    return await Promise.race([
      p.then(
        () => ({ kind: 'done' }) as const,
        (error: unknown) => ({ kind: 'failed', error }) as const,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Deletes the command queues of workers killed without deregistering (orphan-queues.ts): a worker
 * that stops deletes its own, so this finds those of killed ones, whoever starts next.
 */
async function sweepOrphans(o: ExpertCommandsOptions, signal: AbortSignal): Promise<void> {
  const r = await sweepOrphanQueues(o.redis, {
    ...(o.prefix === undefined ? {} : { prefix: o.prefix }),
    graceMs: ORPHAN_GRACE_MS,
    signal,
    onFound: (names) =>
      o.log.info(
        { queues: listed(names, 3, (n) => n) },
        `${names.length} command queue(s) of workers with no registry record: in ${ORPHAN_GRACE_MS / 1000} s, deleting those whose worker is still unregistered and that hold no command`,
      ),
  });
  if (r.found === 0 || signal.aborted) return;
  o.log.info(
    { deleted: r.deleted, holdCommands: r.busy, registeredAgain: r.returned, failed: r.failed.length },
    `command queues of unregistered workers: ${r.deleted} deleted (their worker stopped without deregistering, e.g. killed), ${r.busy} kept as they hold commands, ${r.returned} kept as their worker registered again`,
  );
  if (r.failed.length > 0)
    o.log.warn(
      `command queues of gone workers not deleted: ${listed(r.failed, 3, (f) => `${f.name} (${f.error})`)}`,
    );
}

/** How long a leaving worker waits for Redis to close and delete its command queue. */
const QUEUE_DELETE_MS = 2000;

async function apply(job: ExpertJob, o: ExpertCommandsOptions): Promise<ExpertJobResult> {
  const { compute, server, registrar, log } = o;
  const started = performance.now();
  if (job.fingerprint !== compute.model.fingerprint)
    throw new Error('the command was planned for another model (fingerprint differs)');
  const bad = job.experts.find((e) => e >= compute.model.numExperts);
  if (bad !== undefined)
    throw new Error(`expert ${bad} out of range (the model has ${compute.model.numExperts})`);
  if (job.op === 'load') {
    log.info(`rebalance: loading experts ${formatExpertSet(job.experts)}`);
    const held = await compute.load(job.experts);
    log.info(`rebalance: sessions of experts ${formatExpertSet(job.experts)} built`);
    await server.setHoldings(held.experts);
    await registrar.setExperts(held.experts);
  } else {
    // The last holder of an expert must not drop it: requests needing it would fail (a rebalance
    // loads replicas before unloading; a hand-made or stale command might not have).
    const others = (await readWorkers(o.redis, o.prefix)).filter(
      (w) => w.id !== registrar.id && w.status === 'ready' && w.fingerprint === compute.model.fingerprint,
    );
    const sole = job.experts.filter((e) => server.holds(e) && !others.some((w) => w.experts.includes(e)));
    if (sole.length > 0)
      throw new Error(
        `refusing to unload experts ${formatExpertSet(sole)}: no other ready worker holds them (load replicas first)`,
      );
    const keep = server.experts.filter((e) => !job.experts.includes(e));
    if (keep.length === 0)
      throw new Error(
        `refusing to unload every expert this worker holds (${formatExpertSet(server.experts)}); stop the worker instead`,
      );
    log.info(`rebalance: unloading experts ${formatExpertSet(job.experts)}`);
    // Coordinators stop sending them; what was accepted before is answered; then weights go.
    await server.setHoldings(keep);
    log.info('rebalance: coordinators told, earlier requests answered');
    await registrar.setExperts(keep);
    await compute.unload(job.experts);
  }
  const seconds = (performance.now() - started) / 1000;
  log.info(`rebalance: now holding experts ${formatExpertSet(server.experts)} (${seconds.toFixed(1)} s)`);
  return { experts: [...server.experts], seconds };
}
