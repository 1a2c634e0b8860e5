// `kmoe help NAME...` as the `kmoe NAME... --help` it stands for, rewritten before commander parses
// the line. Commander's help command reads only its first word (`kmoe help bench serve` printed the
// bench group's help), and for a word that names no command it printed the whole help on stderr
// with no message, where `kmoe nonexistent` says "unknown command 'nonexistent'". A help flag
// before the command words (`kmoe --help bench serve`, `kmoe -h nonexistent`) is read the same way:
// commander printed the top-level help for it, exit 0, whatever followed.

import type { Command } from 'commander';

const HELP_FLAGS: ReadonlySet<string> = new Set(['-h', '--help']);

/**
 * The command line to parse: `help` or a help flag among the command words becomes `--help` after
 * them, and a help request that names no command loses its `--help`, so commander reports the
 * unknown command as it does without one (it printed the group's help for `kmoe nonexistent
 * --help`, exit 0).
 */
export function helpRequest(program: Command, argv: readonly string[]): string[] {
  let cmd = program;
  let asked = false;
  const words: string[] = [];
  let i = 0;
  // The command words come first; a flag other than help, or a command without subcommands, ends them.
  for (; i < argv.length && cmd.commands.length > 0; i++) {
    const word = argv[i]!;
    if (word === 'help' || HELP_FLAGS.has(word)) {
      asked = true;
      continue;
    }
    if (word.startsWith('-')) break;
    const next = cmd.commands.find((c) => c.name() === word);
    if (next === undefined) return [...words, ...argv.slice(i)].filter((arg) => !HELP_FLAGS.has(arg));
    cmd = next;
    words.push(word);
  }
  return asked ? [...words, '--help', ...argv.slice(i)] : [...argv];
}
