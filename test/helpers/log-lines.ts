// Reading a kmoe process's pino JSON log in tests: its lines so far, and waiting for one.

/** The fields tests look at; pino writes others (level, time, component). */
export interface LogLine {
  readonly msg: string;
  readonly level?: number;
  readonly worker?: string;
  readonly err?: string;
  readonly reason?: string;
  readonly dialled?: string;
  readonly [field: string]: unknown;
}

/** The JSON lines of `text` (a process's stderr so far), parsed. */
export function logLines(text: string): LogLine[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** Polls `check` every 50 ms; fails after `ms` naming `what` and quoting `log()`. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  log: () => string,
  ms = 30_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; log:\n${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
