// Reading the server's access log in tests: the pino record (`msg: "request"`) of one request, by
// its request id, from a serve process's stderr or a logger captured in the test process.

import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Logger } from '../../../coordinator/server/logger.js';
import { logLines } from '../../helpers/log-lines.js';

export type LogRecord = Readonly<Record<string, unknown>>;

/** The records in pino's JSON lines, anything else (a native library's message) left out. */
export function logRecords(text: string): LogRecord[] {
  return logLines(text);
}

/**
 * The access line of the request with this id once it is logged (a request is logged when its
 * connection closes, after the client has its answer), or undefined after `timeoutMs`.
 */
export async function accessLine(
  logText: () => string,
  requestId: string,
  timeoutMs = 5000,
): Promise<LogRecord | undefined> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const line = logRecords(logText()).find((r) => r['msg'] === 'request' && r['reqId'] === requestId);
    if (line !== undefined || performance.now() > deadline) return line;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An info-level logger whose lines the test reads back (an in-process ApiServer's). */
export function capturedLogger(): { readonly log: Logger; readonly text: () => string } {
  let text = '';
  const sink = new Writable({
    write(chunk, _encoding, done) {
      text += String(chunk);
      done();
    },
  });
  return { log: pino({ level: 'info' }, sink), text: () => text };
}
