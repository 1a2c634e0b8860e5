// How every command's --help is laid out, set once on the root command: commander copies a
// command's help and output configuration to each subcommand as it creates it, so `kmoe serve
// --help`, `kmoe bench serve --help` and every other command wrap by the same rules and width.

import { type AddHelpTextContext, type Command, Help } from 'commander';
import { wrapText } from './wrap-text.js';

/** Commander's width when the output is not a terminal (a pipe, a file) and COLUMNS is not set. */
const DEFAULT_WIDTH = 80;

/**
 * The narrowest layout: a narrower terminal (or COLUMNS) gets this one, whose lines the terminal
 * folds, because text wrapped to a few columns cannot be read at all (below 24 commander stopped
 * wrapping instead, and printed each paragraph on one line). At 40 the widest flag with its indent
 * (`  --llama-cpp-flash-attention <setting>`, 39) still fits, with descriptions below the flags.
 */
export const MIN_HELP_WIDTH = 40;

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

/** Commander's help with its first line, the usage, wrapped too (under its title), which commander never wraps. */
function formatHelp(this: Help, cmd: Command, helper: Help): string {
  const [usage = '', ...rest] = Help.prototype.formatHelp.call(this, cmd, helper).split('\n');
  const indent = usage.indexOf(' ') + 1;
  const wrapped = helper.boxWrap(usage.slice(indent), (helper.helpWidth ?? DEFAULT_WIDTH) - indent);
  return [usage.slice(0, indent) + wrapped.replace(/\n/g, `\n${' '.repeat(indent)}`), ...rest].join('\n');
}

/** Sets the layout on the root command; call it before adding subcommands, which copy it. */
export function layOutHelp(program: Command): Command {
  const width = (stream: NodeJS.WriteStream) => Math.max(MIN_HELP_WIDTH, widthOf(stream) ?? DEFAULT_WIDTH);
  return program
    .configureOutput({
      getOutHelpWidth: () => width(process.stdout),
      getErrHelpWidth: () => width(process.stderr),
    })
    .configureHelp({
      formatItem,
      formatHelp,
      boxWrap: wrapText,
      // Commander's own test before it wraps a description beside its term: the same as formatItem's.
      minWidthToWrap: MIN_DESCRIPTION_COLUMN,
    });
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
