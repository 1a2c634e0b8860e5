// `kmoe cluster status`: what the Redis registry says about the cluster (workers, experts held,
// load, heartbeat age, coverage and replication per expert), as text or JSON.
// `kmoe cluster rebalance`: replicas and placement from the measured load, applied while serving.

import { connectRegistry } from '../../../shared/cluster-registry/redis-connection.js';
import { readWorkers } from '../../../shared/cluster-registry/registry-reader.js';
import { formatExpertSet } from '../../../shared/protocol/expert-set.js';
import { maskUrl } from '../../../shared/runtime/mask-url.js';
import { counted } from '../../../shared/text/counted.js';
import { printable } from '../../../shared/text/printable.js';
import { RebalanceError } from '../../cluster/errors.js';
import {
  type RebalanceOptions,
  type RebalanceReport,
  rebalanceOnce,
  rebalanceWatch,
} from '../../cluster/rebalance/run.js';
import { clusterStatus, formatClusterStatus } from '../../cluster/registry/cluster-status.js';

export interface ClusterStatusOptions {
  readonly redis: string;
  /** --redis-ca: PEM CA certificate(s) the rediss:// server's certificate must chain to. */
  readonly redisCa?: string;
  readonly json?: boolean;
}

export async function status(o: ClusterStatusOptions): Promise<number> {
  const redis = await connectRegistry(o.redis, o.redisCa === undefined ? {} : { ca: o.redisCa });
  try {
    const s = clusterStatus(maskUrl(o.redis), await readWorkers(redis));
    process.stdout.write(o.json ? `${JSON.stringify(s, null, 2)}\n` : formatClusterStatus(s));
    return 0;
  } finally {
    redis.disconnect();
  }
}

export interface ClusterRebalanceOptions {
  readonly redis: string;
  readonly redisCa?: string;
  readonly slots?: number;
  readonly window: number;
  readonly minGain: number;
  readonly commandTimeout: number;
  readonly dryRun?: boolean;
  readonly watch?: number;
  readonly json?: boolean;
}

export async function rebalance(o: ClusterRebalanceOptions): Promise<number> {
  const redis = await connectRegistry(o.redis, o.redisCa === undefined ? {} : { ca: o.redisCa });
  const options: RebalanceOptions = {
    redisUrl: o.redis,
    ...(o.redisCa === undefined ? {} : { redisCa: o.redisCa }),
    ...(o.slots === undefined ? {} : { slots: o.slots }),
    windowMs: o.window * 1000,
    minGain: o.minGain,
    dryRun: o.dryRun === true,
    commandTimeoutMs: o.commandTimeout * 1000,
    progress: (line) => process.stderr.write(`kmoe cluster rebalance: ${line}\n`),
  };
  const print = (r: RebalanceReport) =>
    process.stdout.write(o.json ? `${JSON.stringify(r)}\n` : `${formatReport(r)}\n`);
  try {
    if (o.watch === undefined) {
      print(await rebalanceOnce(redis, options));
      return 0;
    }
    const stop = new AbortController();
    process.once('SIGINT', () => stop.abort());
    process.once('SIGTERM', () => stop.abort());
    await rebalanceWatch(redis, options, o.watch * 1000, stop.signal, (r) => {
      if (r instanceof RebalanceError) options.progress(`round failed: ${r.message}`);
      else print(r);
    });
    return 0;
  } finally {
    redis.disconnect();
  }
}

function formatReport(r: RebalanceReport): string {
  const what =
    r.outcome === 'applied'
      ? `applied ${counted(r.applied.length, 'change')}`
      : r.outcome === 'planned'
        ? 'planned (dry run: nothing changed)'
        : 'already balanced: nothing changed';
  const lines = [
    `rebalance ${what}; expected max/mean load per worker ${r.before.imbalance.toFixed(2)} -> ${r.after.imbalance.toFixed(2)}`,
    `load per expert (pairs/s over ${(r.windowMs / 1000).toFixed(0)} s): ${r.expertLoad.map((p, e) => `${e}:${p.toFixed(1)}`).join(' ')}`,
    `replicas per expert: ${r.replicas.map((n, e) => `${e}:${n}`).join(' ')}`,
  ];
  // Worker ids are registry text: quoted like `kmoe cluster status` quotes them.
  for (const [id, experts] of Object.entries(r.target))
    lines.push(`  ${printable(id)}: ${formatExpertSet(experts)}`);
  return lines.join('\n');
}
