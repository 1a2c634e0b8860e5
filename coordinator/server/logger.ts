// Structured logs for the server: pino JSON lines on stderr (stdout carries only the URL line
// that scripts and tests wait for), one child logger per request carrying its request id.

import { pino } from 'pino';
import { UsageError } from '../../shared/errors/usage-error.js';

export type Logger = pino.Logger;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function createLogger(level: string): Logger {
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got '${level}'`);
  }
  // Synchronous writes: a crash or exit right after a log call must not lose the line.
  return pino({ level, base: { component: 'kmoe-serve' } }, pino.destination({ fd: 2, sync: true }));
}
