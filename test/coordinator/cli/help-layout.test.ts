// The --help layout: text wrapped within the width even where one token is longer than the room
// (a default path, a comma list), and a floor under the width for a tiny COLUMNS.

import { Help } from 'commander';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MIN_HELP_WIDTH } from '../../../coordinator/cli/help-layout.js';
import { wrapText } from '../../../coordinator/cli/wrap-text.js';
import { runCli } from '../../helpers/cli.js';

/** Words of 1-60 characters, some with the characters a long token breaks after. */
const words = fc.array(fc.stringMatching(/^[a-z0-9.,/=:-]{1,60}$/), { minLength: 1, maxLength: 30 });

describe('wrapText', () => {
  it('keeps every line within the width and every character in order', () => {
    fc.assert(
      fc.property(words, fc.integer({ min: 1, max: 100 }), (ws, width) => {
        const wrapped = wrapText(ws.join(' '), width);
        for (const line of wrapped.split('\n')) expect(line.length).toBeLessThanOrEqual(width);
        expect(wrapped.replace(/\s/g, '')).toBe(ws.join(''));
      }),
    );
  });

  it('ends for widths below one column: one character per line at 0 or less, no wrapping for NaN', () => {
    expect(wrapText('ab cd', 0)).toBe('a\nb\nc\nd');
    expect(wrapText('ab cd', -3)).toBe('a\nb\nc\nd');
    expect(wrapText('ab cd', Number.NaN)).toBe('ab cd');
  });

  it("wraps as commander's boxWrap did where every word fits", () => {
    const help = Object.assign(new Help(), { minWidthToWrap: 0 });
    fc.assert(
      fc.property(words, fc.integer({ min: 1, max: 100 }), (ws, width) => {
        fc.pre(ws.every((w) => w.length <= width));
        const text = ws.join(' ');
        expect(wrapText(text, width)).toBe(help.boxWrap(text, width));
      }),
    );
  });

  it('breaks a token longer than the width after a comma, slash or equals sign, else at the width', () => {
    expect(wrapText('(default: data/eval/valid.docs.u16,data/eval/valid.code.u16)', 30)).toBe(
      '(default:\ndata/eval/valid.docs.u16,\ndata/eval/valid.code.u16)',
    );
    expect(wrapText('"bench-results/adaptive-k-time/time.json")', 34)).toBe(
      '"bench-results/adaptive-k-time/\ntime.json")',
    );
    expect(wrapText('abcdefghij', 4)).toBe('abcd\nefgh\nij');
    // A list too long for any line starts where the words before it end, up to a separator that
    // fits; a path does not (its seams are no better than the line's end).
    expect(wrapText('with other settings (a=FORMAT,expert-weights=FORMAT,workers=N: x', 32)).toBe(
      'with other settings (a=FORMAT,\nexpert-weights=FORMAT,workers=N:\nx',
    );
    expect(wrapText('see (default: bench-results/adaptive-k-time/time.json)', 34)).toBe(
      'see (default:\nbench-results/adaptive-k-time/\ntime.json)',
    );
    // Line breaks in the text stay; a blank line stays blank.
    expect(wrapText('a b\n\nc', 10)).toBe('a b\n\nc');
  });
});

describe('kmoe --help layout', () => {
  const commands = ['', 'calibrate', 'serve', 'bench model', 'bench adaptive-k-time', 'bench project'];
  const help = (command: string, columns: string) =>
    runCli([...command.split(' ').filter((w) => w !== ''), '--help'], { env: { COLUMNS: columns } });

  it.each(['60', '80'])(
    'keeps every line within COLUMNS=%s, long defaults and lists included',
    async (columns) => {
      for (const command of commands) {
        const r = await help(command, columns);
        expect(r.code).toBe(0);
        const over = r.stdout.split('\n').filter((line) => line.length > Number(columns));
        expect({ command, over }).toEqual({ command, over: [] });
      }
    },
  );

  it('leaves no word alone on a line before a long list (bench model --versus at COLUMNS=80)', async () => {
    // `settings` was on a line of its own: the list after it, too long for the 39 columns, was
    // begun on the next line instead of after it up to a comma.
    const r = await help('bench model', '80');
    const at = r.stdout.split('\n').findIndex((line) => line.startsWith('  --versus <settings>'));
    expect(r.stdout.split('\n').slice(at, at + 6)).toEqual([
      '  --versus <settings>                    also run a second engine with other',
      '                                         settings (dense-weights=FORMAT,',
      '                                         expert-weights=FORMAT,workers=N:',
      '                                         experts in N local worker processes),',
      '                                         interleaved round by round, and report',
      '                                         its ratios to the first',
    ]);
  });

  it('breaks a default too long for its column after a comma (calibrate --ids at COLUMNS=60)', async () => {
    // At 80 the default fits the 50-column description beside --ids; at 60 it has 29 columns.
    const r = await help('calibrate', '60');
    expect(r.stdout).toMatch(/^ {29}data\/eval\/valid\.docs\.u16,\n {29}data\/eval\/valid\.code\.u16\)$/m);
  });

  it.each(['1', '10', '23', String(MIN_HELP_WIDTH - 1)])(
    'lays out at %s columns as at the floor width, wrapped, not one line per paragraph',
    async (columns) => {
      for (const command of commands) {
        const r = await help(command, columns);
        expect(r.code).toBe(0);
        expect(r.stdout).toBe((await help(command, String(MIN_HELP_WIDTH))).stdout);
        const widths = r.stdout.split('\n').map((line) => line.length);
        expect({ command, widest: Math.max(...widths) }).toEqual({
          command,
          widest: expect.toSatisfy((w: number) => w <= MIN_HELP_WIDTH && w > MIN_HELP_WIDTH - 10),
        });
      }
      // Descriptions go under their flags; the usage line wraps too.
      const serve = await help('serve', columns);
      expect(serve.stdout).toMatch(/^ {2}--port <port>\n {6}listen port; 0 picks a free one/m);
      const adaptive = await help('bench adaptive-k-time', columns);
      expect(adaptive.stdout).toMatch(/^Usage: kmoe bench adaptive-k-time\n {7}\[options\]$/m);
    },
  );

  it('marks the options a command cannot run without as required, and only those', async () => {
    const serve = (await help('serve', '400')).stdout;
    expect(serve).toMatch(/^ {2}--model <dir> +checkpoint directory .*\(required\)$/m);
    expect(serve).not.toMatch(/^ {2}--port <port>.*\(required\)/m);
    const worker = (await help('worker', '400')).stdout;
    expect(worker).toMatch(/^ {2}--experts <set> +.*\(required\)$/m);
    expect(worker).not.toMatch(/^ {2}--redis <url>.*\(required\)/m);
  });
});
