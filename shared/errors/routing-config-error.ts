// Raised when a routing policy is constructed with parameters that are invalid in themselves
// (unsorted thresholds) or for the model it will route (K above the number of experts).

import { KmoeError } from './kmoe-error.js';

export class RoutingConfigError extends KmoeError {
  /** Policy kind (`topk`, `entropy`, ...) whose parameters are at fault. */
  readonly policy: string;
  /** Every problem found, each naming the parameter (and layer) it concerns. */
  readonly problems: readonly string[];

  constructor(message: string, options: { policy: string; problems: readonly string[]; hint?: string }) {
    super(message, options);
    this.policy = options.policy;
    this.problems = options.problems;
  }
}
