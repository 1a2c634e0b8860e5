// A command line that cannot be run as given (unknown flag, bad value, missing option). Only the
// CLI throws it: the CLI prints the message and one line pointing at the command's --help, exit 2.

import { KmoeError } from '../../shared/errors/kmoe-error.js';

export class UsageError extends KmoeError {}

/**
 * Runs a library parser on a flag's value: an error of one of `types` (the value is wrong, not the
 * machine) becomes a UsageError with the library's one-line message, `flag: ` in front if given.
 */
export async function flagValue<T>(
  flag: string | undefined,
  types: readonly (abstract new (...args: never[]) => Error)[],
  parse: () => T | Promise<T>,
): Promise<T> {
  try {
    return await parse();
  } catch (err) {
    if (!types.some((t) => err instanceof t)) throw err;
    const message = (err as Error).message;
    // The library's hint (a grammar, the accepted values) goes along: the message alone is terse.
    const hint = err instanceof KmoeError ? err.hint : undefined;
    throw new UsageError(flag === undefined ? message : `${flag}: ${message}`, {
      cause: err,
      ...(hint === undefined ? {} : { hint }),
    });
  }
}
