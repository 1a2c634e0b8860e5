// A command line that cannot be run as given (unknown flag, bad value, missing option). Only the
// CLI throws it: the CLI prints the message and one line pointing at the command's --help, exit 2.

import { KmoeError, type KmoeErrorOptions } from '../../shared/errors/kmoe-error.js';
import { oneLine } from '../../shared/text/printable.js';

/**
 * Its message quotes the command line as typed (a value, a path, a URL), so it is escaped by the
 * rule of every quoted text (oneLine): a value holding a newline, an escape sequence or a bidi
 * control cannot forge a line of the error nor make it read as something else. Here, not at each
 * quoting site, so that no message can forget it; kmoe's own text has none of those characters, and
 * nothing is cut (the cut could take the end of kmoe's text). The hint is kmoe's text (a grammar
 * may span lines) and is kept as it is.
 */
export class UsageError extends KmoeError {
  constructor(message: string, options?: KmoeErrorOptions) {
    super(oneLine(message, Number.POSITIVE_INFINITY), options);
  }
}

/**
 * Commander's own usage errors quote the command line too (an unknown option or command, an excess
 * argument): escaped by the same rule, except the line breaks commander itself puts, the trailing
 * one and the one before its "(Did you mean ...?)" suggestion, which names kmoe's own flags.
 */
export function escapeCommanderError(message: string): string {
  // Only the suggestion that ends the message is commander's: a "\n(Did you mean" inside the quoted
  // command line is the user's and is escaped with the rest.
  return message
    .split(/\n(?=\(Did you mean [^\n]*\?\)\n?$|$)/)
    .map((part) => oneLine(part, Number.POSITIVE_INFINITY))
    .join('\n');
}

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
