// `kmoe cluster status`: what the Redis registry says about the cluster (workers, experts held,
// load, heartbeat age, coverage and replication per expert), as text or JSON.

import { connectRegistry } from '../../../shared/cluster-registry/redis-connection.js';
import { readWorkers } from '../../../shared/cluster-registry/registry-reader.js';
import { maskUrl } from '../../../shared/runtime/mask-url.js';
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
