// How every command's --help is laid out, set once on the root command: commander copies a
// command's help and output configuration to each subcommand as it creates it, so `kmoe serve
// --help`, `kmoe bench serve --help` and every other command wrap by the same rules and width.

import { type AddHelpTextContext, type Command, Help } from 'commander';

/** Commander's width when the output is not a terminal (a pipe, a file) and COLUMNS is not set. */
const DEFAULT_WIDTH = 80;

/**
 * Narrower than this, an option's description goes on the lines below its flags instead of beside
 * them. Commander's own rule stops wrapping there: a command with one long flag
 * (`--llama-cpp-flash-attention <setting>`) printed 300-column lines at width 80.
 */
const MIN_DESCRIPTION_COLUMN = 30;

/** Indent of a description printed below its flags. */
const BELOW_INDENT = 6;

/**
 * The width to wrap at: COLUMNS when it is a positive integer (it overrides the terminal's, as for
 * Python's argparse and GNU tools, and sets a width for a pipe), else the terminal's, else
 * commander's 80. COLUMNS is the environment's, not kmoe's input: a value that is no width is
 * passed over as those tools pass it over, not refused.
 */
function widthOf(stream: NodeJS.WriteStream): number | undefined {
  const columns = process.env['COLUMNS']?.trim();
  if (columns !== undefined && /^[1-9]\d*$/.test(columns)) return Number(columns);
  return stream.isTTY ? stream.columns : undefined;
}

/** An option, command or argument with its description: beside it when there is room, else below. */
function formatItem(this: Help, term: string, termWidth: number, description: string, helper: Help): string {
  const width = helper.helpWidth ?? DEFAULT_WIDTH;
  // 2 columns of indent before the term and 2 between term and description, as commander lays them.
  if (description === '' || width - termWidth - 4 >= MIN_DESCRIPTION_COLUMN)
    return Help.prototype.formatItem.call(this, term, termWidth, description, helper);
  const below = helper.boxWrap(description, width - BELOW_INDENT);
  return `  ${term}\n${below.replace(/^/gm, ' '.repeat(BELOW_INDENT))}`;
}

/** Sets the layout on the root command; call it before adding subcommands, which copy it. */
export function layOutHelp(program: Command): Command {
  return program
    .configureOutput({
      getOutHelpWidth: () => widthOf(process.stdout) ?? DEFAULT_WIDTH,
      getErrHelpWidth: () => widthOf(process.stderr) ?? DEFAULT_WIDTH,
    })
    .configureHelp({ formatItem, minWidthToWrap: MIN_DESCRIPTION_COLUMN - BELOW_INDENT });
}

/**
 * Prose after a command's options (`addHelpText('after', helpNote(...))`): its lines are joined
 * and wrapped at the width the options use (a blank line separates paragraphs), so the text can be
 * written as it reads best in the source and still fit any terminal.
 */
export function helpNote(text: string): (context: AddHelpTextContext) => string {
  return ({ error, command }) => {
    const output = command.configureOutput();
    const width = (error ? output.getErrHelpWidth?.() : output.getOutHelpWidth?.()) ?? DEFAULT_WIDTH;
    const help = command.createHelp();
    const paragraphs = text
      .trim()
      .split(/\n\s*\n/)
      .map((p) => help.boxWrap(p.replace(/\s*\n\s*/g, ' '), width));
    return `\n${paragraphs.join('\n\n')}`;
  };
}
