// Raised when a coordinator and a worker cannot agree to work together: the worker is unreachable,
// does not answer the hello in time, or refuses it (another protocol version or another model).

import { KmoeError } from './kmoe-error.js';

export class HandshakeError extends KmoeError {
  /** The worker's ws:// URL. */
  readonly worker: string;

  constructor(worker: string, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(`worker ${worker}: ${message}`, options);
    this.worker = worker;
  }
}
