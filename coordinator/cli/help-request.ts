// `kmoe help NAME...` as the `kmoe NAME... --help` it stands for, rewritten before commander parses
// the line. Commander's help command reads only its first word (`kmoe help bench serve` printed the
// bench group's help), and for a word that names no command it printed the whole help on stderr
// with no message, where `kmoe nonexistent` says "unknown command 'nonexistent'".

import type { Command } from 'commander';

const HELP_FLAGS: ReadonlySet<string> = new Set(['-h', '--help']);

/**
 * The command line to parse: `help` among the command words becomes `--help` after them, and a
 * help request that names no command loses its `--help`, so commander reports the unknown command
 * as it does without one (it printed the group's help for `kmoe nonexistent --help`, exit 0).
 */
export function helpRequest(program: Command, argv: readonly string[]): string[] {
  let cmd = program;
  for (const [i, word] of argv.entries()) {
    // The command words come first; a flag or a command without subcommands ends them.
    if (word.startsWith('-') || cmd.commands.length === 0) break;
    const next = cmd.commands.find((c) => c.name() === word);
    if (next !== undefined) {
      cmd = next;
      continue;
    }
    if (word === 'help') return helpRequest(program, [...argv.slice(0, i), ...argv.slice(i + 1), '--help']);
    return argv.filter((arg) => !HELP_FLAGS.has(arg));
  }
  return [...argv];
}
