// The one line a worker prints on stdout once it accepts connections. Whoever started the process
// (kmoe local-cluster, tests, a supervisor) waits for it to learn the URL, as the port may be 0.
// It ends with how coordinators are authenticated, so an operator sees an open worker at a glance.

import { formatExpertSet, parseExpertSet } from './expert-set.js';

/**
 * token: every coordinator proves the cluster token; loopback-only: no token, listening on a
 * loopback address only; insecure: no token on a reachable address (--insecure).
 */
export type WorkerAuthMode = 'token' | 'loopback-only' | 'insecure';

const AUTH_TEXT: Record<WorkerAuthMode, string> = {
  token: 'token',
  'loopback-only': 'none loopback-only',
  insecure: 'none INSECURE',
};

const PATTERN =
  /^kmoe worker ready (ws:\/\/\S+) experts (\S+)(?: auth (token|none loopback-only|none INSECURE))?$/;

export interface ReadyLine {
  readonly url: string;
  readonly experts: readonly number[];
  /** Absent in the ready lines of releases before authentication. */
  readonly auth?: WorkerAuthMode;
}

export function formatReadyLine(r: ReadyLine): string {
  const auth = r.auth === undefined ? '' : ` auth ${AUTH_TEXT[r.auth]}`;
  return `kmoe worker ready ${r.url} experts ${formatExpertSet(r.experts)}${auth}`;
}

/** The ready line's content, or undefined for any other line. */
export function parseReadyLine(line: string): ReadyLine | undefined {
  const m = PATTERN.exec(line.trim());
  if (!m) return undefined;
  const auth = (Object.keys(AUTH_TEXT) as WorkerAuthMode[]).find((k) => AUTH_TEXT[k] === m[3]);
  return { url: m[1]!, experts: parseExpertSet(m[2]!), ...(auth === undefined ? {} : { auth }) };
}
