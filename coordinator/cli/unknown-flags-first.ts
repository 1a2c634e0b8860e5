// Unknown flags are reported before anything else wrong with a command line. Commander runs each
// flag's parser as it reads the flag, stops at a flag missing its value and checks required
// options, and only then looks for flags it does not know, so `kmoe serve --modle m` said
// "required option '--model <dir>' not specified": the typo, the mistake to fix, was hidden behind
// a consequence of it. A flag that takes a value and is given twice is one more such mistake,
// found here too: commander kept the last value silently. And a word that is no flag's value
// (`kmoe eval models/tiny-mixtral`, the --model forgotten) is named: commander said only "too many
// arguments for 'eval'. Expected 0 arguments but got 1".

import type { EventEmitter } from 'node:events';
import type { Command, Option } from 'commander';
import { isRepeatable, takesList } from './options.js';
import { UsageError } from './usage-error.js';

/** The one commander method that reports a flag missing its value (not in commander's typings). */
interface ReportsMissingValue {
  optionMissingArgument(option: Option): void;
}

/**
 * Moves a command's value and required-option checks after commander's own (unknown flags, extra
 * arguments): its parsers' usage errors, a flag at the end of the line without its value and a
 * flag given twice are kept instead of thrown, and its required options are checked here instead
 * of by commander. Call it once the command has all its options; call the returned function first
 * thing in the command's action, which commander runs only after its checks.
 */
export function unknownFlagsFirst(cmd: Command): () => void {
  const problems: UsageError[] = [];
  // Commander would throw here, before it has looked at the rest of the line for unknown flags;
  // it then hands the option an undefined value, which the parsers below leave alone.
  (cmd as unknown as ReportsMissingValue).optionMissingArgument = (option) => {
    problems.push(new UsageError(`option '${option.flags}' argument missing`));
  };
  for (const option of cmd.options) {
    // A boolean flag given twice loses nothing; --routing collects its repetitions.
    if ((!option.required && !option.optional) || isRepeatable(option)) continue;
    const parse = option.parseArg;
    const values: string[] = [];
    // Before commander's own listener (a Command is an EventEmitter; its typings name only `on`), so
    // that the repetition is reported before its value's problems.
    (cmd as unknown as EventEmitter).prependListener(`option:${option.name()}`, (raw: unknown) => {
      // undefined: the value missing at the end of the line, reported on its own.
      values.push(typeof raw === 'string' ? raw : '');
      if (values.length !== 2) return;
      // A list given in two flags is one list: show it written as one.
      const list = values.every((value) => value !== '' && takesList(parse, value));
      problems.push(
        new UsageError(
          list
            ? `${option.long} is given twice: it takes a comma-separated list, e.g. ${option.long} ${values.join(',')}`
            : `${option.long} is given twice: give it once`,
        ),
      );
    });
  }
  for (const option of cmd.options) {
    const parse = option.parseArg;
    if (parse === undefined) continue;
    option.argParser(<T>(raw: string, previous: T): T => {
      // The value missing at the end of the line, reported above.
      if ((raw as string | undefined) === undefined) return previous;
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
  for (const option of required) {
    option.makeOptionMandatory(false);
    // Commander's help says nothing of a mandatory option; it is checked here now, and said here.
    option.description = `${option.description} (required)`;
  }
  // kmoe's commands take flags only; the words left over are reported below, by name.
  cmd.allowExcessArguments(true);
  return () => {
    const extra = cmd.args.slice(cmd.registeredArguments.length);
    if (extra.length > 0) throw excessArguments(cmd, extra);
    // The first mistake on the line, as commander would have reported it.
    if (problems[0] !== undefined) throw problems[0];
    for (const option of required)
      if (cmd.getOptionValue(option.attributeName()) === undefined)
        throw new UsageError(`required option '${option.flags}' not specified`);
  };
}

/** Words on the line that are no flag and no flag's value, each quoted. */
function excessArguments(cmd: Command, extra: readonly string[]): UsageError {
  const quoted = extra.map((word) => `'${word}'`).join(', ');
  const what = extra.length === 1 ? 'argument' : 'arguments';
  return new UsageError(`unexpected ${what} ${quoted}: ${cmd.name()} takes flags only`, {
    hint: 'a value goes right after its flag (e.g. --model DIR); a value with spaces needs quotes',
  });
}
