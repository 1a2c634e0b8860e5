// Raised when the workers' experts do not cover the model: some expert would have nowhere to run,
// at start-up (no worker holds it) or later (every worker holding it has failed).

import { KmoeError } from './kmoe-error.js';

export class PlacementError extends KmoeError {
  /** The experts no (live) worker holds. */
  readonly missing: readonly number[];

  constructor(message: string, options: { missing: readonly number[]; hint?: string }) {
    super(message, options);
    this.missing = options.missing;
  }
}
