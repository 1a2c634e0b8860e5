#!/usr/bin/env node
// The `kmoe` binary: parses the command line (program.ts), runs the command, and maps what it
// throws to a message and an exit code: usage errors -> the error and a pointer to --help, exit 2;
// KmoeError -> the message and its hint, exit 1; a file-system error on a path (ENOENT, EACCES, ...)
// -> one line naming the path, exit 1 (the stack with KMOE_DEBUG=1); anything else -> the stack, exit 1.

import { type Command, CommanderError } from 'commander';
import { KmoeError } from '../../shared/errors/kmoe-error.js';
import { helpRequest } from './help-request.js';
import { buildProgram, helpPointer, type Outcome } from './program.js';
import { stdoutClosed } from './stdout-closed.js';
import { UsageError } from './usage-error.js';

/** Commander's own exits that are not errors. */
const CLEAN_EXITS = new Set(['commander.helpDisplayed', 'commander.version']);

/** The deepest command named on the command line, for messages and the --help pointer. */
function commandOf(program: Command, argv: readonly string[]): Command {
  let cmd = program;
  for (const token of argv) {
    if (token.startsWith('-')) continue;
    const next = cmd.commands.find((c) => c.name() === token);
    if (!next) break;
    cmd = next;
  }
  return cmd;
}

function label(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** What a file-system error means, per code: the ones a user causes with a wrong path. */
const FS_ERRORS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file or directory',
  EEXIST: 'already exists',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
};

/** One line for a Node file-system error that names a path (a user's wrong path, not a bug). */
function fileSystemMessage(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const { code, path } = err as NodeJS.ErrnoException;
  if (code === undefined || path === undefined) return undefined;
  const what = FS_ERRORS[code];
  return what === undefined ? undefined : `${path}: ${what}`;
}

async function main(argv: string[]): Promise<number> {
  const outcome: Outcome = { code: 0 };
  const program = buildProgram(argv, outcome);
  const line = helpRequest(program, argv);
  try {
    await program.parseAsync(line, { from: 'user' });
    return outcome.code;
  } catch (err) {
    // Commander has already printed its message (and the --help pointer).
    // Help asked for exits 0 (commander's help command still answers `kmoe -- help`, which
    // helpRequest leaves alone); help printed because a command is missing (`kmoe bench`) does not.
    if (err instanceof CommanderError) {
      const asked = err.code === 'commander.help' && err.exitCode === 0;
      return CLEAN_EXITS.has(err.code) || asked ? 0 : 2;
    }
    const cmd = commandOf(program, line);
    if (err instanceof UsageError) {
      process.stderr.write(`${label(cmd)}: error: ${err.message}\n`);
      if (err.hint) process.stderr.write(`hint: ${err.hint}\n`);
      process.stderr.write(`${helpPointer(cmd)}\n`);
      return 2;
    }
    if (err instanceof KmoeError) {
      process.stderr.write(`${label(cmd)}: error: ${err.message}\n`);
      if (err.hint) process.stderr.write(`hint: ${err.hint}\n`);
      return 1;
    }
    const fsMessage = fileSystemMessage(err);
    if (fsMessage !== undefined && process.env['KMOE_DEBUG'] !== '1') {
      process.stderr.write(`${label(cmd)}: error: ${fsMessage}\n`);
      return 1;
    }
    throw err;
  }
}

// A reader that stopped reading (`kmoe ... --help | head`, a closed pipe): nothing more can be said
// on stdout, which is not an error of the command; exit as a pipeline member does, quietly, or,
// for a command in the middle of an engine call, as soon as it has stopped (stdout-closed.ts).
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  if (!stdoutClosed()) process.exit(process.exitCode ?? 0);
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(
      `kmoe: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exitCode = 1;
  },
);
