// Which registered workers accept a TCP connection right now. A coordinator starting within a TTL
// of a worker's crash still sees its record; connecting to it would fail the whole start, so the
// start uses only workers that answer (and waits while those do not cover every expert).

import { connect } from 'node:net';
import type { WorkerRecord } from '../../../shared/cluster-registry/record.js';

const PROBE_TIMEOUT_MS = 2000;

function accepts(url: string): Promise<boolean> {
  let host: string;
  let port: number;
  try {
    const u = new URL(url);
    host = u.hostname.replace(/^\[|\]$/g, '');
    port = Number(u.port || (u.protocol === 'wss:' ? 443 : 80));
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** The records whose URL accepts a connection, and whether together they hold every expert. */
export async function reachableWorkers(
  records: readonly WorkerRecord[],
  numExperts: number,
): Promise<{
  readonly reachable: readonly WorkerRecord[];
  readonly unreachable: readonly WorkerRecord[];
  readonly covered: boolean;
}> {
  const ok = await Promise.all(records.map((r) => accepts(r.url)));
  const reachable = records.filter((_, i) => ok[i]);
  const held = new Uint8Array(numExperts);
  for (const r of reachable) for (const e of r.experts) if (e < numExperts) held[e] = 1;
  return { reachable, unreachable: records.filter((_, i) => !ok[i]), covered: held.every((h) => h === 1) };
}
