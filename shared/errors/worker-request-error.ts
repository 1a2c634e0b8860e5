// Raised when one dispatch to a worker does not produce a valid result: it timed out, the
// connection dropped, the worker replied with an error, or the reply was malformed. The message
// names the worker's URL and experts so an operator knows which process to look at.

import { KmoeError } from './kmoe-error.js';

export type WorkerFailure =
  | 'timeout'
  | 'disconnected'
  | 'error-reply'
  | 'bad-reply'
  | 'oversize'
  | 'cancelled';

export class WorkerRequestError extends KmoeError {
  readonly worker: string;
  readonly reason: WorkerFailure;

  constructor(
    worker: string,
    reason: WorkerFailure,
    message: string,
    options: { hint?: string; cause?: unknown } = {},
  ) {
    super(message, options);
    this.worker = worker;
    this.reason = reason;
  }
}
