// The cluster as the registry shows it: workers (experts held, load, heartbeat age) and, per model
// in the registry, coverage and replication per expert. One builder for `kmoe cluster status` (text
// and JSON) and for the coordinator's /metrics gauges.

import type { WorkerRecord } from '../../../shared/cluster-registry/record.js';
import { expertView } from '../../../shared/cluster-registry/registry-reader.js';
import { formatExpertSet } from '../../../shared/protocol/expert-set.js';
import { counted } from '../../../shared/text/counted.js';
import { printable } from '../../../shared/text/printable.js';

export interface WorkerStatusJSON {
  readonly id: string;
  readonly url: string;
  readonly status: WorkerRecord['status'];
  readonly experts: readonly number[];
  readonly device: string;
  readonly expertWeights: string;
  readonly threads: number;
  readonly fingerprint: string;
  /** Milliseconds since the worker's last heartbeat (by this host's clock and the worker's). */
  readonly heartbeatAgeMs: number;
  readonly pairsPerSec: number;
  readonly tokensPerSec: number;
}

export interface ExpertStatusJSON {
  readonly expert: number;
  /** Live (not draining) workers holding it. */
  readonly replicas: number;
  readonly holders: readonly string[];
  readonly pairsPerSec: number;
}

/** Load of one (MoE layer, expert), summed over the workers holding the expert. */
export interface LayerExpertLoadJSON {
  readonly layer: number;
  readonly expert: number;
  readonly pairsPerSec: number;
}

export interface ModelStatusJSON {
  readonly fingerprint: string;
  readonly numExperts: number;
  readonly covered: boolean;
  readonly missing: readonly number[];
  readonly experts: readonly ExpertStatusJSON[];
  /** Per (layer, expert) with traffic in the workers' last heartbeat interval, by layer then expert. */
  readonly layers: readonly LayerExpertLoadJSON[];
}

export interface ClusterStatusJSON {
  /** The registry's URL, password masked. */
  readonly registry: string;
  readonly workers: readonly WorkerStatusJSON[];
  readonly models: readonly ModelStatusJSON[];
  readonly pairsPerSec: number;
  readonly tokensPerSec: number;
}

export function clusterStatus(
  registry: string,
  records: readonly WorkerRecord[],
  now = Date.now(),
): ClusterStatusJSON {
  const workers = records.map(
    (r): WorkerStatusJSON => ({
      id: r.id,
      url: r.url,
      status: r.status,
      experts: r.experts,
      device: r.device,
      expertWeights: r.expertWeights,
      threads: r.threads,
      fingerprint: r.fingerprint,
      heartbeatAgeMs: Math.max(0, now - r.heartbeatAt),
      pairsPerSec: r.load.pairsPerSec,
      tokensPerSec: r.load.tokensPerSec,
    }),
  );
  const byModel = new Map<string, WorkerRecord[]>();
  for (const r of records) byModel.set(r.fingerprint, [...(byModel.get(r.fingerprint) ?? []), r]);
  const models = [...byModel].map(([fingerprint, rs]): ModelStatusJSON => {
    const numExperts = Math.max(...rs.map((r) => r.numExperts));
    const view = expertView(
      rs.filter((r) => r.status === 'ready'),
      numExperts,
    );
    const missing = view.filter((v) => v.holders.length === 0).map((v) => v.expert);
    const perLayer = new Map<string, LayerExpertLoadJSON>();
    for (const r of rs) {
      if (r.status !== 'ready') continue;
      for (const [layer, expert, p] of r.load.layers) {
        const key = `${layer} ${expert}`;
        const prev = perLayer.get(key)?.pairsPerSec ?? 0;
        perLayer.set(key, { layer, expert, pairsPerSec: Math.round((prev + p) * 100) / 100 });
      }
    }
    return {
      fingerprint,
      numExperts,
      covered: missing.length === 0,
      missing,
      experts: view.map((v) => ({
        expert: v.expert,
        replicas: v.holders.length,
        holders: v.holders,
        pairsPerSec: v.pairsPerSec,
      })),
      layers: [...perLayer.values()].sort((a, b) => a.layer - b.layer || a.expert - b.expert),
    };
  });
  const sum = (f: (w: WorkerStatusJSON) => number) => workers.reduce((a, w) => a + f(w), 0);
  return {
    registry,
    workers,
    models,
    pairsPerSec: sum((w) => w.pairsPerSec),
    tokensPerSec: sum((w) => w.tokensPerSec),
  };
}

/**
 * For people: a worker table, then coverage and replication per expert for each model. A record's
 * id, URL and fingerprint are text whoever can write to the registry chose: quoted with `printable`
 * (escaped, bounded), so a newline cannot forge a row nor a terminal escape or a bidi control
 * rewrite the operator's screen. The URL is bounded at 200 characters like the id (a record's may
 * be 2,000).
 */
export function formatClusterStatus(s: ClusterStatusJSON): string {
  const lines = [`registry ${s.registry}: ${counted(s.workers.length, 'worker')}`];
  if (s.workers.length > 0) {
    lines.push(
      '',
      'worker                          status    experts      pairs/s  tokens/s  heartbeat  url',
    );
    for (const w of s.workers) {
      lines.push(
        [
          printable(w.id).padEnd(31),
          w.status.padEnd(9),
          (formatExpertSet(w.experts) || '-').padEnd(12),
          w.pairsPerSec.toFixed(1).padStart(8),
          w.tokensPerSec.toFixed(1).padStart(9),
          `${(w.heartbeatAgeMs / 1000).toFixed(1)} s`.padStart(10),
          ` ${printable(w.url)}`,
        ].join(' '),
      );
    }
  }
  for (const m of s.models) {
    lines.push(
      '',
      `model ${printable(m.fingerprint.slice(0, 12))}…, ${m.numExperts} experts: ` +
        (m.covered
          ? 'every expert covered'
          : `NOT covered, experts ${formatExpertSet(m.missing)} have no worker`),
      'expert  replicas  pairs/s',
    );
    for (const e of m.experts)
      lines.push(
        `${String(e.expert).padStart(6)}  ${String(e.replicas).padStart(8)}  ${e.pairsPerSec.toFixed(1).padStart(7)}`,
      );
    const hot = [...m.layers].sort((a, b) => b.pairsPerSec - a.pairsPerSec).slice(0, 8);
    if (hot.length > 0)
      lines.push(
        `hottest (layer, expert): ${hot.map((h) => `(${h.layer}, ${h.expert}) ${h.pairsPerSec.toFixed(1)}/s`).join(', ')}`,
      );
  }
  lines.push('', `total: ${s.pairsPerSec.toFixed(1)} pairs/s, ${s.tokensPerSec.toFixed(1)} tokens/s`);
  return `${lines.join('\n')}\n`;
}
