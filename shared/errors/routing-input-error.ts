// Raised when route() is handed router probabilities that cannot be a softmax for this policy's
// model: wrong shape, wrong expert count, layer out of range, negative/NaN values or rows that do not sum to 1.

import { KmoeError } from './kmoe-error.js';

export class RoutingInputError extends KmoeError {
  /** MoE layer index of the offending input. */
  readonly layer: number;
  /** Token row at fault, when one row is to blame. */
  readonly token: number | undefined;

  constructor(message: string, options: { layer: number; token?: number; hint?: string }) {
    super(message, options);
    this.layer = options.layer;
    this.token = options.token;
  }
}
