// Structured logs for the server: pino JSON lines on stderr (stdout carries only the URL line
// that scripts and tests wait for), one child logger per request carrying its request id.

import type { pino } from 'pino';
import { KmoeError } from '../../shared/errors/kmoe-error.js';
import { createProcessLogger } from '../../shared/runtime/logger.js';
import { LOG_LEVELS, type LogLevel } from './log-levels.js';

export type Logger = pino.Logger;

/** A log level pino does not know (the CLI validates --log-level first; this guards other callers). */
export class LogLevelError extends KmoeError {
  constructor(level: string) {
    super(`log level must be one of ${LOG_LEVELS.join(', ')}, got '${level}'`, { details: { level } });
  }
}

export function createLogger(level: string): Logger {
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new LogLevelError(level);
  return createProcessLogger('kmoe-serve', level as LogLevel);
}
