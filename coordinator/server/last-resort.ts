// Process-wide handlers for errors nothing else caught. Request and engine-step failures are
// caught where they happen (fastify answers 500, the scheduler fails the step's sequences), so
// what arrives here is a bug in a callback. A rejected promise unwinds no stack and leaves no
// half-updated state behind: it is logged and the server keeps serving. An uncaught exception may
// have left any structure half-updated (Node's documentation says resuming is unsafe): it is
// logged, running requests get a short grace to finish, and the process exits with status 70.

import type { Logger } from './logger.js';

/** EX_SOFTWARE: an internal software error. */
const FATAL_EXIT_CODE = 70;

/** Installs the handlers; returns the function that removes them. */
export function installLastResortHandlers(log: Logger, drain: () => Promise<unknown>): () => void {
  const onRejection = (reason: unknown): void => {
    log.error({ err: reason }, 'unhandled promise rejection (a bug); the server keeps running');
  };
  let exiting = false;
  const onException = (err: Error): void => {
    log.fatal({ err }, 'uncaught exception (a bug); draining and exiting');
    if (exiting) return;
    exiting = true;
    void drain()
      .catch((drainErr: unknown) => log.error({ err: drainErr }, 'drain after an uncaught exception failed'))
      .finally(() => process.exit(FATAL_EXIT_CODE));
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return () => {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  };
}
