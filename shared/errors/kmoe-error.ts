// Base class for every error kmoe raises on purpose: what failed, where, and what to do about it.
// Errors carry a stable machine-readable `code` and JSON-safe `details` (worker URL, missing
// experts, file, layer...) so that they survive a thread or process boundary intact: the HTTP API
// and the CLI map codes to statuses and exit codes, never class identity or message text.

/** JSON-safe fields that say where an error happened (`{ worker: 'ws://…', missing: [3, 4] }`). */
export type ErrorDetails = Readonly<
  Record<string, string | number | boolean | null | readonly (string | number)[]>
>;

export interface KmoeErrorOptions {
  readonly hint?: string;
  readonly cause?: unknown;
  /** Stable code; default: the class name in snake_case without the `_error` suffix. */
  readonly code?: string;
  readonly details?: ErrorDetails;
}

/** What crosses a thread or process boundary for a KmoeError. */
export interface SerializedKmoeError {
  readonly name: string;
  readonly code: string;
  readonly message: string;
  readonly hint?: string;
  readonly details: ErrorDetails;
  readonly stack?: string;
}

export class KmoeError extends Error {
  /** What the user can do about it; printed after the message by the CLI. */
  readonly hint: string | undefined;
  /** Stable identifier of the failure kind, e.g. `placement`, `routing_spec`. */
  readonly code: string;
  readonly details: ErrorDetails;

  constructor(message: string, options: KmoeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint;
    this.code = options.code ?? codeOf(new.target.name);
    this.details = options.details ?? {};
  }

  serialize(): SerializedKmoeError {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      details: this.details,
      ...(this.stack === undefined ? {} : { stack: this.stack }),
    };
  }
}

/** `PlacementError` -> `placement`, `RoutingSpecError` -> `routing_spec`. */
export function codeOf(className: string): string {
  return className
    .replace(/Error$/, '')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase();
}
