// Which registered workers accept a TCP connection right now. A coordinator starting within a TTL
// of a worker's crash still sees its record; connecting to it would fail the whole start, so the
// start uses only workers that answer (and waits while those do not cover every expert).

import { connect } from 'node:net';
import type { WorkerRecord } from '../../../shared/cluster-registry/record.js';

const PROBE_TIMEOUT_MS = 2000;

/** Undefined if `url` accepts a TCP connection now, else why not (the socket's error). */
function refusal(url: string): Promise<string | undefined> {
  let host: string;
  let port: number;
  try {
    const u = new URL(url);
    host = u.hostname.replace(/^\[|\]$/g, '');
    port = Number(u.port || (u.protocol === 'wss:' ? 443 : 80));
  } catch (err) {
    return Promise.resolve(`not a URL (${(err as Error).message})`);
  }
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (why: string | undefined) => {
      socket.destroy();
      resolve(why);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () => done(`no TCP connection within ${PROBE_TIMEOUT_MS} ms`));
    socket.once('connect', () => done(undefined));
    socket.once('error', (err) => done(err.message));
  });
}

/** The records whose URL accepts a connection, and whether together they hold every expert. */
export async function reachableWorkers(
  records: readonly WorkerRecord[],
  numExperts: number,
): Promise<{
  readonly reachable: readonly WorkerRecord[];
  /** The others, each with the socket's error. */
  readonly unreachable: readonly { readonly url: string; readonly err: string }[];
  /** The experts no reachable worker holds (none: covered). */
  readonly missing: readonly number[];
}> {
  const why = await Promise.all(records.map((r) => refusal(r.url)));
  const reachable = records.filter((_, i) => why[i] === undefined);
  const held = new Uint8Array(numExperts);
  for (const r of reachable) for (const e of r.experts) if (e < numExperts) held[e] = 1;
  const unreachable = records.flatMap((r, i) => (why[i] === undefined ? [] : [{ url: r.url, err: why[i]! }]));
  const missing = [...held.keys()].filter((e) => held[e] === 0);
  return { reachable, unreachable, missing };
}
