// Raised when a routing spec string (`--routing topk:2`) does not parse or its parameters are
// invalid on their own. The hint carries the grammar so the CLI can show the user what is accepted.

import { KmoeError } from './kmoe-error.js';

export class RoutingSpecError extends KmoeError {
  /** The spec string exactly as the user gave it. */
  readonly spec: string;

  constructor(message: string, options: { spec: string; hint?: string; cause?: unknown }) {
    super(message, options);
    this.spec = options.spec;
  }
}
