// Base class for every error kmoe raises on purpose: what failed, where, and what to do about it.

export class KmoeError extends Error {
  /** What the user can do about it; printed after the message by the CLI. */
  readonly hint: string | undefined;

  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint;
  }
}
