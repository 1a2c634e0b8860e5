// Errors of routing: policies, specs, profiles and statistics.

import { KmoeError } from '../errors/kmoe-error.js';

// Raised when a routing policy is constructed with parameters that are invalid in themselves
// (unsorted thresholds) or for the model it will route (K above the number of experts).
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

/**
 * Where a RoutingInputError lies: a layer, or one token row of it, whose message `describe` can
 * re-render for that token counted from another row (so a token never comes without it).
 */
export type RoutingInputErrorOptions =
  | { readonly layer: number; readonly hint?: string }
  | {
      readonly layer: number;
      readonly token: number;
      readonly describe: (token: number) => string;
      readonly hint?: string;
    };

// Raised when route() is handed router probabilities that cannot be a softmax for this policy's
// model: wrong shape, wrong expert count, layer out of range, negative/NaN values or rows that do not sum to 1.
export class RoutingInputError extends KmoeError {
  /** MoE layer index of the offending input. */
  readonly layer: number;
  /** Token row at fault, when one row is to blame. */
  readonly token: number | undefined;
  /** The message for the same fault at another row number (see `countedFrom`). */
  private readonly describe: ((token: number) => string) | undefined;

  constructor(message: string, options: RoutingInputErrorOptions) {
    super(message, options);
    this.layer = options.layer;
    this.token = 'token' in options ? options.token : undefined;
    this.describe = 'token' in options ? options.describe : undefined;
  }

  /**
   * The same error with its token counted from row `first` of the input: a batch routes many
   * requests' rows at once, and a request is told about its own token, not the batch's row.
   */
  countedFrom(first: number): RoutingInputError {
    if (this.token === undefined || this.describe === undefined || first === 0) return this;
    const token = this.token - first;
    return new RoutingInputError(this.describe(token), {
      layer: this.layer,
      token,
      describe: this.describe,
      ...(this.hint === undefined ? {} : { hint: this.hint }),
    });
  }
}

// Raised when a routing profile file cannot be read, is not valid JSON, has an unsupported
// version or schema violations, or was calibrated for a different model than the one loaded.
export class RoutingProfileError extends KmoeError {
  /** Path of the profile file. */
  readonly file: string;

  constructor(message: string, options: { file: string; hint?: string; cause?: unknown }) {
    super(message, options);
    this.file = options.file;
  }
}

// Raised when a routing spec string (`--routing topk:2`) does not parse or its parameters are
// invalid on their own. The hint carries the grammar so the CLI can show the user what is accepted.
export class RoutingSpecError extends KmoeError {
  /** The spec string exactly as the user gave it. */
  readonly spec: string;

  constructor(message: string, options: { spec: string; hint?: string; cause?: unknown }) {
    super(message, options);
    this.spec = options.spec;
  }
}

// Raised when routing statistics are fed a decision that does not fit them (layer out of range,
// K outside 1..E), merged with statistics of another shape, or restored from malformed JSON.
export class RoutingStatsError extends KmoeError {}
