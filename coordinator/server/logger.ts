// Structured logs for the server: pino JSON lines on stderr (stdout carries only the URL line
// that scripts and tests wait for), one child logger per request carrying its request id.

import { pino } from 'pino';
import { KmoeError } from '../../shared/errors/kmoe-error.js';

export type Logger = pino.Logger;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A log level pino does not know (the CLI validates --log-level first; this guards other callers). */
export class LogLevelError extends KmoeError {
  constructor(level: string) {
    super(`log level must be one of ${LOG_LEVELS.join(', ')}, got '${level}'`, { details: { level } });
  }
}

export function createLogger(level: string): Logger {
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new LogLevelError(level);
  // Synchronous writes: a crash or exit right after a log call must not lose the line.
  return pino({ level, base: { component: 'kmoe-serve' } }, pino.destination({ fd: 2, sync: true }));
}
