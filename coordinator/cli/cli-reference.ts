// docs/cli.md, the command-line reference: every command's --help as kmoe prints it, at a fixed
// width, in one markdown page. It is rendered from the program itself (program.ts, help-layout.ts),
// so the page and `kmoe COMMAND --help` cannot say different things; `npm run docs:cli` writes it.

import type { Command } from 'commander';
import { buildProgram } from './program.js';

/** Where the reference lives, relative to the project root. */
export const CLI_REFERENCE_FILE = 'docs/cli.md';

/** The width the reference's help is laid out at: the same page on every machine and terminal. */
export const CLI_REFERENCE_WIDTH = 100;

/** A command's words from the root: `kmoe bench serve`. */
function fullName(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** The commands `--help` lists under `cmd`, in its order, without `help` itself (not a command of kmoe's own). */
function subcommands(cmd: Command): Command[] {
  return cmd
    .createHelp()
    .visibleCommands(cmd)
    .filter((c) => cmd.commands.includes(c));
}

/** `cmd` and every command below it that help shows, depth first, as `kmoe --help` lists them. */
function commandTree(cmd: Command): Command[] {
  return [cmd, ...subcommands(cmd).flatMap(commandTree)];
}

/**
 * What `kmoe ... --help` prints for `cmd` on a stdout `width` columns wide without colours: the same
 * rendering (commander's help with kmoe's layout and the prose added after the options), only the
 * output, width and colours of the command are set here instead of read from the terminal.
 */
function helpText(cmd: Command, width: number): string {
  let text = '';
  cmd.configureOutput({
    writeOut: (s) => {
      text += s;
    },
    getOutHelpWidth: () => width,
    getOutHasColors: () => false,
  });
  cmd.outputHelp();
  return text;
}

/** GitHub's anchor of a heading made of lower-case words and hyphens. */
function anchor(heading: string): string {
  return heading.replace(/ /g, '-');
}

/**
 * The markdown of the reference: a list of the commands, then each command's help in a text
 * block under a heading of its full name. Machine-dependent defaults (threads: the cores) appear
 * as the rule help states, never as this machine's number.
 */
export function cliReference(width: number = CLI_REFERENCE_WIDTH): string {
  const program = buildProgram([], { code: 0 });
  const commands = commandTree(program);
  const depth = (cmd: Command) => fullName(cmd).split(' ').length - 2;
  const contents = commands
    .slice(1)
    .map((c) => `${'  '.repeat(depth(c))}- [\`${fullName(c)}\`](#${anchor(fullName(c))}): ${c.summary()}`);
  const sections = commands.map((c) => {
    return `## ${fullName(c)}\n\n\`\`\`text\n${helpText(c, width).trimEnd()}\n\`\`\``;
  });
  return [
    '# kmoe command-line reference',
    [
      `Every command's \`--help\`, as \`kmoe COMMAND --help\` prints it ${width} columns wide. Generated`,
      "from the program's own option definitions by `npm run docs:cli`: do not edit it by hand;",
      '`test/coordinator/cli/cli-reference.test.ts` fails when it differs from what the program prints.',
      'Defaults that depend on the machine (`--threads`: the cores) are given as their rule.',
    ].join('\n'),
    `## Commands\n\n- [\`kmoe\`](#kmoe): ${program.description()}\n${contents.join('\n')}`,
    ...sections,
  ]
    .join('\n\n')
    .concat('\n');
}
