// `kmoe cluster rebalance`: measures the load the workers report in the registry over a window,
// plans replicas and placement (plan.ts), and has the workers load and unload experts through their
// command queues (shared/cluster-registry/expert-jobs.ts) while the cluster serves. Loads all run
// (and must all succeed) before any unload, so every expert stays covered throughout; coordinators
// learn each change from the worker's holdings notice and route by it from their next layer.
// One rebalancer at a time per registry (a Redis lock); `watch` repeats it (the automatic mode).

import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  type ExpertJob,
  type ExpertJobResult,
  expertJobResultSchema,
  expertQueueName,
  jobConnection,
  jobPrefix,
} from '../../../shared/cluster-registry/expert-jobs.js';
import {
  DEFAULT_PREFIX,
  HEARTBEAT_MS,
  registryKeys,
  UNLOCK_SCRIPT,
} from '../../../shared/cluster-registry/keys.js';
import type { WorkerRecord } from '../../../shared/cluster-registry/record.js';
import { readWorkers } from '../../../shared/cluster-registry/registry-reader.js';
import { formatExpertSet } from '../../../shared/protocol/expert-set.js';
import { waitUnlessAborted } from '../../../shared/runtime/abortable-wait.js';
import { printable } from '../../../shared/text/printable.js';
import { RebalanceError } from '../errors.js';
import { addAndWait } from './job-wait.js';
import { type Balance, planRebalance, type RebalancePlan } from './plan.js';

export interface RebalanceOptions {
  /** The registry's URL (redis:// or rediss://). */
  readonly redisUrl: string;
  /** PEM CA for a rediss:// URL (--redis-ca). */
  readonly redisCa?: string;
  readonly prefix?: string;
  /** Experts each worker may hold afterwards; default: as many as it holds now (moves only). */
  readonly slots?: number;
  /** How long to average the workers' reported load before planning. */
  readonly windowMs: number;
  /** Apply only if the expected max load per worker drops by at least this fraction. */
  readonly minGain: number;
  /** Plan and report only. */
  readonly dryRun: boolean;
  /** Per worker command (a load reads weights: minutes for a big model). */
  readonly commandTimeoutMs: number;
  /** One line per step, for people (stderr). */
  readonly progress: (line: string) => void;
}

export interface MeasuredLoad {
  readonly fingerprint: string;
  readonly numExperts: number;
  readonly workers: readonly WorkerRecord[];
  /** Per expert, mean pairs/s over the window, summed over holders and layers. */
  readonly expertLoad: readonly number[];
  /** Per (layer, expert) with traffic: mean pairs/s over the window. */
  readonly layerLoad: readonly { layer: number; expert: number; pairsPerSec: number }[];
  readonly samples: number;
}

export interface AppliedChange {
  readonly id: string;
  readonly op: 'load' | 'unload';
  readonly experts: readonly number[];
  readonly seconds: number;
  /** What the worker holds afterwards. */
  readonly holds: readonly number[];
}

export interface RebalanceReport {
  readonly outcome: 'applied' | 'planned' | 'balanced';
  readonly windowMs: number;
  readonly samples: number;
  readonly expertLoad: readonly number[];
  readonly layerLoad: MeasuredLoad['layerLoad'];
  readonly before: Balance;
  readonly after: Balance;
  readonly replicas: readonly number[];
  readonly target: Record<string, readonly number[]>;
  readonly applied: readonly AppliedChange[];
}

/** Averages the ready workers' reported load over `windowMs` (one read per heartbeat). */
export async function measureLoad(
  redis: Redis,
  windowMs: number,
  prefix = DEFAULT_PREFIX,
): Promise<MeasuredLoad> {
  const samples = Math.max(1, Math.round(windowMs / HEARTBEAT_MS));
  let workers: WorkerRecord[] = [];
  let expertLoad: number[] = [];
  const layerLoad = new Map<string, { layer: number; expert: number; pairsPerSec: number }>();
  let fingerprint = '';
  let numExperts = 0;
  for (let i = 0; i < samples; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, HEARTBEAT_MS));
    workers = (await readWorkers(redis, prefix)).filter((w) => w.status === 'ready');
    const models = new Set(workers.map((w) => w.fingerprint));
    if (models.size > 1)
      throw new RebalanceError(`the registry holds workers of ${models.size} models; rebalance handles one`, {
        hint: 'give each model its own registry (or Redis key prefix)',
      });
    if (workers.length === 0)
      throw new RebalanceError('no ready workers in the registry', {
        hint: 'start workers with kmoe worker --redis (the same URL and key prefix), then run rebalance',
      });
    fingerprint = workers[0]!.fingerprint;
    numExperts = Math.max(...workers.map((w) => w.numExperts));
    if (expertLoad.length !== numExperts) expertLoad = new Array<number>(numExperts).fill(0);
    for (const w of workers) {
      for (const [e, p] of w.load.experts) if (e < numExperts) expertLoad[e]! += p / samples;
      for (const [layer, expert, p] of w.load.layers) {
        const key = `${layer} ${expert}`;
        const prev = layerLoad.get(key)?.pairsPerSec ?? 0;
        layerLoad.set(key, { layer, expert, pairsPerSec: prev + p / samples });
      }
    }
  }
  return {
    fingerprint,
    numExperts,
    workers,
    expertLoad: expertLoad.map(round2),
    layerLoad: [...layerLoad.values()]
      .map((l) => ({ ...l, pairsPerSec: round2(l.pairsPerSec) }))
      .sort((a, b) => a.layer - b.layer || a.expert - b.expert),
    samples,
  };
}

/** One rebalance: measure, plan, and (unless a dry run or already balanced) apply. */
export async function rebalanceOnce(redis: Redis, o: RebalanceOptions): Promise<RebalanceReport> {
  const prefix = o.prefix ?? DEFAULT_PREFIX;
  const lock = registryKeys(prefix).rebalanceLock;
  const token = randomBytes(8).toString('hex');
  // Held for the longest a rebalance can take; released at the end.
  const lockMs = o.windowMs + 4 * o.commandTimeoutMs + 60_000;
  if ((await redis.set(lock, token, 'PX', lockMs, 'NX')) !== 'OK')
    throw new RebalanceError('another kmoe cluster rebalance is running on this registry', {
      hint: 'wait for it to finish (its lock expires on its own if it died)',
    });
  try {
    // What can be refused without measuring is refused before the window.
    const first = await measureLoad(redis, 0, prefix);
    const slots = first.workers.reduce(
      (a, w) => a + Math.min(o.slots ?? w.experts.length, first.numExperts),
      0,
    );
    if (slots < first.numExperts)
      throw new RebalanceError(
        `${first.workers.length} workers x --slots ${o.slots ?? 'as held'} give ${slots} expert slots, fewer than the model's ${first.numExperts} experts`,
        {
          hint: `every expert needs a slot: give --slots ${Math.ceil(first.numExperts / first.workers.length)} or more, or start more workers`,
        },
      );
    o.progress(`measuring the load the workers report for ${(o.windowMs / 1000).toFixed(0)} s`);
    const m = await measureLoad(redis, o.windowMs, prefix);
    const total = m.expertLoad.reduce((a, b) => a + b, 0);
    if (total === 0)
      throw new RebalanceError('the workers reported no traffic during the window: nothing to balance', {
        hint: 'run it while the cluster serves requests, or with a longer --window',
      });
    const plan = planRebalance({
      workers: m.workers.map((w) => ({ id: w.id, experts: w.experts, slots: o.slots ?? w.experts.length })),
      numExperts: m.numExperts,
      expertLoad: m.expertLoad,
    });
    const report = (outcome: RebalanceReport['outcome'], applied: AppliedChange[]): RebalanceReport => ({
      outcome,
      windowMs: o.windowMs,
      samples: m.samples,
      expertLoad: m.expertLoad,
      layerLoad: m.layerLoad,
      before: plan.before,
      after: plan.after,
      replicas: outcome === 'balanced' ? replicasOf(m.workers, m.numExperts) : plan.replicas,
      // What the workers hold after this run: the plan only when it was applied (or, dry run, planned).
      target:
        outcome === 'balanced'
          ? Object.fromEntries(m.workers.map((w) => [w.id, [...w.experts]]))
          : Object.fromEntries(plan.target),
      applied,
    });
    const gain = plan.before.max > 0 ? 1 - plan.after.max / plan.before.max : 0;
    o.progress(
      `expected max/mean load per worker: ${plan.before.imbalance.toFixed(2)} now, ${plan.after.imbalance.toFixed(2)} after (${(gain * 100).toFixed(1)}% less on the busiest worker)`,
    );
    // Workers holding more than --slots must shed experts whatever the balance: a constraint, not a gain.
    const overSlots = m.workers.some((w) => w.experts.length > (o.slots ?? w.experts.length));
    if (plan.changes.length === 0 || (!overSlots && gain < o.minGain)) {
      o.progress(`balanced enough (gain below --min-gain ${o.minGain}): no change`);
      return report('balanced', []);
    }
    for (const c of plan.changes)
      o.progress(
        `worker ${printable(c.id)}: load ${formatExpertSet(c.load) || '-'}, unload ${formatExpertSet(c.unload) || '-'}`,
      );
    if (o.dryRun) return report('planned', []);
    const applied = await apply(plan, m.fingerprint, o, prefix);
    return report('applied', applied);
  } finally {
    await redis.eval(UNLOCK_SCRIPT, 1, lock, token).catch(() => {});
  }
}

/** Loads everywhere (in parallel), then unloads (in parallel); stops at the first failure. */
async function apply(
  plan: RebalancePlan,
  fingerprint: string,
  o: RebalanceOptions,
  prefix: string,
): Promise<AppliedChange[]> {
  const applied: AppliedChange[] = [];
  const phase = async (op: 'load' | 'unload') => {
    const todo = plan.changes.filter((c) => (op === 'load' ? c.load : c.unload).length > 0);
    const results = await Promise.allSettled(
      todo.map(async (c) => {
        const experts = op === 'load' ? c.load : c.unload;
        o.progress(
          `worker ${printable(c.id)}: ${op === 'load' ? 'loading' : 'unloading'} ${formatExpertSet(experts)}`,
        );
        const r = await command(c.id, { op, experts: [...experts], fingerprint }, o, prefix);
        applied.push({ id: c.id, op, experts, seconds: r.seconds, holds: r.experts });
        o.progress(
          `worker ${printable(c.id)}: ${op} done in ${r.seconds.toFixed(1)} s, holds ${formatExpertSet(r.experts)}`,
        );
      }),
    );
    const failed = results.flatMap((r, i) =>
      r.status === 'rejected' ? [`worker ${todo[i]!.id}: ${(r.reason as Error).message}`] : [],
    );
    if (failed.length > 0)
      throw new RebalanceError(`${op} failed (${failed.join('; ')})`, {
        hint:
          op === 'load'
            ? 'nothing was unloaded, so every expert is still covered; check the worker logs and run rebalance again'
            : 'the experts that failed to unload are still held (more replicas than planned); run rebalance again',
      });
  };
  await phase('load');
  await phase('unload');
  return applied;
}

/** Sends one command to a worker's queue and waits for its result. */
async function command(
  workerId: string,
  job: ExpertJob,
  o: RebalanceOptions,
  prefix: string,
): Promise<ExpertJobResult> {
  const name = expertQueueName(workerId);
  const opts = { connection: jobConnection(o.redisUrl, o.redisCa), prefix: jobPrefix(prefix) };
  const queue = new Queue<ExpertJob, ExpertJobResult>(name, opts);
  try {
    const outcome = await addAndWait(
      queue,
      opts,
      (q) =>
        q.add(job.op, job, {
          attempts: 1,
          removeOnComplete: { age: 3600 },
          removeOnFail: { age: 24 * 3600 },
        }),
      o.commandTimeoutMs,
    );
    if ('result' in outcome) return expertJobResultSchema.parse(outcome.result);
    // A worker that died or left never takes it: do not leave it for a later worker of that id.
    if ((await outcome.job.getState()) === 'waiting') await outcome.job.remove().catch(() => {});
    throw outcome.error;
  } finally {
    await queue.close();
  }
}

/** `--watch`: rebalance every `intervalMs` until `signal` aborts; a failed round is reported, not fatal. */
export async function rebalanceWatch(
  redis: Redis,
  o: RebalanceOptions,
  intervalMs: number,
  signal: AbortSignal,
  onReport: (r: RebalanceReport | RebalanceError) => void,
): Promise<void> {
  while (!signal.aborted) {
    try {
      onReport(await rebalanceOnce(redis, o));
    } catch (err) {
      if (!(err instanceof RebalanceError)) throw err;
      onReport(err);
    }
    await waitUnlessAborted(intervalMs, signal);
  }
}

/** Workers holding each expert. */
function replicasOf(workers: readonly WorkerRecord[], numExperts: number): number[] {
  const n = new Array<number>(numExperts).fill(0);
  for (const w of workers) for (const e of w.experts) if (e < numExperts) n[e]!++;
  return n;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
