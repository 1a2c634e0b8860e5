// The registry's view of the cluster as Prometheus gauges on the coordinator's /metrics, computed at
// scrape time from the membership's last successful read (no Redis round trip per scrape).

import { Gauge, type Registry } from 'prom-client';
import { clusterStatus } from './cluster-status.js';
import type { RedisMembership } from './redis-membership.js';

export function registerClusterMetrics(
  registry: Registry,
  membership: RedisMembership,
  fingerprint: string,
): void {
  const registers = [registry];
  const status = () => {
    const snap = membership.snapshot();
    return { snap, s: clusterStatus('', snap.records) };
  };
  new Gauge({
    name: 'kmoe_cluster_workers',
    help: 'Workers in the registry at its last read, by status (loading, ready, draining)',
    labelNames: ['status'],
    registers,
    collect() {
      this.reset();
      for (const w of status().s.workers) this.inc({ status: w.status });
    },
  });
  new Gauge({
    name: 'kmoe_cluster_worker_heartbeat_age_seconds',
    help: "Seconds since each registered worker's last heartbeat",
    labelNames: ['worker', 'url'],
    registers,
    collect() {
      this.reset();
      for (const w of status().s.workers) this.set({ worker: w.id, url: w.url }, w.heartbeatAgeMs / 1000);
    },
  });
  new Gauge({
    name: 'kmoe_cluster_worker_pairs_per_second',
    help: '(token, expert) pairs each worker computed per second over its last heartbeat interval',
    labelNames: ['worker'],
    registers,
    collect() {
      this.reset();
      for (const w of status().s.workers) this.set({ worker: w.id }, w.pairsPerSec);
    },
  });
  new Gauge({
    name: 'kmoe_cluster_worker_tokens_per_second',
    help: 'Hidden states each worker received per second over its last heartbeat interval',
    labelNames: ['worker'],
    registers,
    collect() {
      this.reset();
      for (const w of status().s.workers) this.set({ worker: w.id }, w.tokensPerSec);
    },
  });
  const model = () => status().s.models.find((m) => m.fingerprint === fingerprint);
  new Gauge({
    name: 'kmoe_cluster_expert_replicas',
    help: "Ready registered workers holding each expert of this coordinator's model (0 = not covered)",
    labelNames: ['expert'],
    registers,
    collect() {
      this.reset();
      for (const e of model()?.experts ?? []) this.set({ expert: String(e.expert) }, e.replicas);
    },
  });
  new Gauge({
    name: 'kmoe_cluster_expert_pairs_per_second',
    help: 'Pairs per second computed for each expert, summed over layers and the workers holding it',
    labelNames: ['expert'],
    registers,
    collect() {
      this.reset();
      for (const e of model()?.experts ?? []) this.set({ expert: String(e.expert) }, e.pairsPerSec);
    },
  });
  new Gauge({
    name: 'kmoe_cluster_registry_read_age_seconds',
    help: 'Seconds since the registry was last read successfully (grows while Redis is unreachable)',
    registers,
    collect() {
      const at = status().snap.readAt;
      this.set(at === 0 ? Number.NaN : (Date.now() - at) / 1000);
    },
  });
}
