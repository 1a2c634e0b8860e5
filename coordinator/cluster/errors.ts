// Errors of the cluster: placement (experts without a live worker), worker requests, worker start-up
// and the coordinator-worker handshake.

import { KmoeError } from '../../shared/errors/kmoe-error.js';
import { MissingExpertsError } from '../moe/errors.js';

// Raised when the workers' experts do not cover the model: some expert would have nowhere to run,
// at start-up (no worker holds it) or later (every worker holding it has failed). `details.missing`
// crosses the engine-thread boundary so the HTTP API can name the experts in its 503. A
// MissingExpertsError of the MoE seam: the engine fails only the sequences routed to `missing`.
export class PlacementError extends MissingExpertsError {
  constructor(message: string, options: { missing: readonly number[]; hint?: string }) {
    super(message, options);
  }
}

// Raised when one dispatch to a worker does not produce a valid result: it timed out, the
// connection dropped, the worker replied with an error, or the reply was malformed. The message
// names the worker's URL and experts so an operator knows which process to look at.
export type WorkerFailure =
  | 'timeout'
  | 'disconnected'
  | 'error-reply'
  | 'bad-reply'
  | 'oversize'
  | 'draining'
  | 'cancelled'
  /** The worker no longer holds an expert it was sent (it unloaded it; its holdings notice came first). */
  | 'not-held';

export class WorkerRequestError extends KmoeError {
  readonly worker: string;
  readonly reason: WorkerFailure;

  constructor(
    worker: string,
    reason: WorkerFailure,
    message: string,
    options: { hint?: string; cause?: unknown } = {},
  ) {
    super(message, { ...options, details: { worker, reason } });
    this.worker = worker;
    this.reason = reason;
  }
}

/**
 * The residual stream of a layer is beyond what float32 normalisation can hold after the workers'
 * results were added: every result was finite, but too large for any expert's output (a broken or
 * hostile worker). Named here, rather than as the NaN router score of the next layer it causes.
 */
export class ExpertResultOverflowError extends KmoeError {
  constructor(
    readonly layer: number,
    readonly worker: string,
    message: string,
  ) {
    super(message, {
      code: 'expert_result_overflow',
      details: { layer, worker },
      hint: 'check that worker (its weights, its kmoe release) or take it out of the cluster; real expert outputs are many orders of magnitude smaller',
    });
  }
}

// Raised when a worker process started by this one (kmoe local-cluster) exits or stays silent
// before printing its ready line. Carries the end of its stderr, which says why.
export class WorkerStartError extends KmoeError {
  constructor(what: string, stderrTail: readonly string[]) {
    const tail = stderrTail.length > 0 ? `; its last messages:\n  ${stderrTail.join('\n  ')}` : '';
    super(`${what}${tail}`);
  }
}

// Raised when a coordinator and a worker cannot agree to work together: the worker is unreachable,
// does not answer the hello in time, or refuses it (another protocol version, another model, or the
// cluster token: `details.reason` 'auth', whichever side found it wrong or missing).
export class HandshakeError extends KmoeError {
  /** The worker's ws:// URL. */
  readonly worker: string;

  constructor(
    worker: string,
    message: string,
    options: { hint?: string; cause?: unknown; reason?: string } = {},
  ) {
    const { reason, ...rest } = options;
    super(`worker ${worker}: ${message}`, {
      ...rest,
      details: { worker, ...(reason === undefined ? {} : { reason }) },
    });
    this.worker = worker;
  }
}

// Raised by `kmoe cluster rebalance` when no plan can be made (no traffic measured, too few slots
// for every expert) or a worker did not apply its part (it failed, left, or timed out). The
// cluster still covers every expert: loads run before unloads, and unloads stop at the first failure.
export class RebalanceError extends KmoeError {
  constructor(message: string, options: { hint?: string } = {}) {
    super(message, { ...options, code: 'rebalance' });
  }
}
