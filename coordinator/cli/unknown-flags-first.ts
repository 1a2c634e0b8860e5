// Unknown flags are reported before anything else wrong with a command line. Commander runs each
// flag's parser as it reads the flag and checks required options, and only then looks for flags it
// does not know, so `kmoe serve --modle m` said "required option '--model <dir>' not specified":
// the typo, the mistake to fix, was hidden behind a consequence of it.

import type { Command } from 'commander';
import { UsageError } from './usage-error.js';

/**
 * Moves a command's value and required-option checks after commander's own (unknown flags, extra
 * arguments): its parsers' usage errors are kept instead of thrown, and its required options are
 * checked here instead of by commander. Call it once the command has all its options; call the
 * returned function first thing in the command's action, which commander runs only after its checks.
 */
export function unknownFlagsFirst(cmd: Command): () => void {
  const problems: UsageError[] = [];
  for (const option of cmd.options) {
    const parse = option.parseArg;
    if (parse === undefined) continue;
    option.argParser(<T>(raw: string, previous: T): T => {
      try {
        return parse(raw, previous);
      } catch (err) {
        if (!(err instanceof UsageError)) throw err;
        problems.push(err);
        return previous;
      }
    });
  }
  const required = cmd.options.filter((option) => option.mandatory);
  for (const option of required) option.makeOptionMandatory(false);
  return () => {
    // The first wrong value on the line, as commander would have reported it.
    if (problems[0] !== undefined) throw problems[0];
    for (const option of required)
      if (cmd.getOptionValue(option.attributeName()) === undefined)
        throw new UsageError(`required option '${option.flags}' not specified`);
  };
}
