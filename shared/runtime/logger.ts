// pino JSON lines on stderr for kmoe's long-running processes (expert workers, local-cluster,
// `serve`, which validates its --log-level in coordinator/server/logger.ts). stdout stays for the one line that
// scripts wait for (the ready line, the URL). Parents re-emit their children's lines with
// relayLogLine, so a cluster's logs are one JSON stream with the child named in a field.

import { pino } from 'pino';

export type Logger = pino.Logger;

export function createProcessLogger(component: string, level: pino.LevelWithSilent = 'info'): Logger {
  // Synchronous writes: a crash or exit right after a log call must not lose the line.
  return pino({ level, base: { component } }, pino.destination({ fd: 2, sync: true }));
}

// pino's own record fields, replaced by the relaying logger's.
const OWN_FIELDS = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'component']);

/**
 * Re-emit a line a child process wrote to stderr: a pino record at its own level with its fields
 * and `fields` added, anything else (a native library's message, a crash trace) as text at warn.
 */
export function relayLogLine(log: Logger, line: string, fields: Record<string, unknown>): void {
  let rec: unknown;
  try {
    rec = line.startsWith('{') ? JSON.parse(line) : undefined;
  } catch {
    rec = undefined;
  }
  if (typeof rec !== 'object' || rec === null || typeof (rec as { level?: unknown }).level !== 'number') {
    log.warn(fields, line);
    return;
  }
  const r = rec as Record<string, unknown> & { level: number };
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) if (!OWN_FIELDS.has(k)) extra[k] = v;
  const level = pino.levels.labels[r.level] ?? 'info';
  log[level as pino.Level]({ ...extra, ...fields }, typeof r.msg === 'string' ? r.msg : '');
}

/**
 * The text of a line a child wrote to stderr, for a parent that writes plain text (`generate`,
 * `eval`): a pino record's message, led by its level when it is a warning or worse and followed by
 * its error's message; anything else unchanged.
 */
export function logLineText(line: string): string {
  let rec: unknown;
  try {
    rec = line.startsWith('{') ? JSON.parse(line) : undefined;
  } catch {
    rec = undefined;
  }
  if (typeof rec !== 'object' || rec === null || typeof (rec as { level?: unknown }).level !== 'number')
    return line;
  const r = rec as { level: number; msg?: unknown; err?: { message?: unknown } };
  const msg = typeof r.msg === 'string' ? r.msg : '';
  const err = typeof r.err?.message === 'string' ? `: ${r.err.message}` : '';
  const level = r.level >= pino.levels.values['warn']! ? `${pino.levels.labels[r.level] ?? 'warn'}: ` : '';
  return `${level}${msg}${err}`;
}
