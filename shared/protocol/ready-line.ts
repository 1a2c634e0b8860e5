// The one line a worker prints on stdout once it accepts connections. Whoever started the process
// (kmoe local-cluster, tests, a supervisor) waits for it to learn the URL, as the port may be 0.

import { formatExpertSet, parseExpertSet } from './expert-set.js';

const PATTERN = /^kmoe worker ready (ws:\/\/\S+) experts (\S+)$/;

export interface ReadyLine {
  readonly url: string;
  readonly experts: readonly number[];
}

export function formatReadyLine(r: ReadyLine): string {
  return `kmoe worker ready ${r.url} experts ${formatExpertSet(r.experts)}`;
}

/** The ready line's content, or undefined for any other line. */
export function parseReadyLine(line: string): ReadyLine | undefined {
  const m = PATTERN.exec(line.trim());
  return m ? { url: m[1]!, experts: parseExpertSet(m[2]!) } : undefined;
}
