// Quoting text a peer chose (a worker's error reply, a registry record's key and reason) as one log
// line: control characters, line separators and invisible format characters (Unicode category Cf,
// the bidi controls among them) come out as \uXXXX escapes, everything else as it was.

import { describe, expect, it } from 'vitest';
import { oneLine, printable } from '../../../shared/text/printable.js';

/** Every bidi control: ALM, LRM, RLM, LRE RLE PDF LRO RLO, LRI RLI FSI PDI. */
const BIDI = [0x061c, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069];

const escaped = (cp: number) => `\\u${cp.toString(16).padStart(4, '0')}`;

describe.each([
  ['printable', (t: string) => printable(t, 500)],
  ['oneLine', (t: string) => oneLine(t)],
])('%s', (_name, quote) => {
  it.each(BIDI.map((cp) => [escaped(cp), cp]))('escapes the bidi control %s', (_label, cp) => {
    const text = `ok ${String.fromCodePoint(cp)}txt.exe`;
    expect(quote(text)).toBe(`ok ${escaped(cp)}txt.exe`);
  });

  it('a right-to-left override cannot reorder what follows it: the quoted text holds no bidi control', () => {
    const forged = `worker fine\u202e\u2066 gnirts desrever\u2069\u202c`;
    const out = quote(forged);
    expect(out).toBe('worker fine\\u202e\\u2066 gnirts desrever\\u2069\\u202c');
    expect(/[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/.test(out)).toBe(false);
  });

  it('keeps letters of right-to-left scripts, combining marks and emoji as they are', () => {
    const text = 'שלום مرحبا e\u0301 👩 💻 🇫🇷';
    expect(quote(text)).toBe(text);
  });

  it('escapes the zero width joiner of an emoji sequence (a format character like the others)', () => {
    expect(quote('👩\u200d💻')).toBe('👩\\u200d💻');
  });

  it('escapes invisible format characters, tag characters beyond the basic plane as \\u{...}', () => {
    // Zero width space, word joiner, BOM, then "hi" in tag characters (invisible ASCII copies).
    expect(quote('a\u200bb\u2060c\ufeffd\u{e0068}\u{e0069}')).toBe(
      'a\\u200bb\\u2060c\\ufeffd\\u{e0068}\\u{e0069}',
    );
  });

  it('a pair cut by the length bound leaves no lone surrogate', () => {
    const out = quote(`${'x'.repeat(499)}😀`.slice(0, 500) + 'y'.repeat(600));
    expect(/\p{Cs}/u.test(out)).toBe(false);
    expect(out).toContain('\\ud83d');
  });

  it('still escapes line breaks, terminal escapes and the line separators', () => {
    const out = quote('a\nb\u001b[2J\u2028\u2029\u0085c');
    expect(['\n', '\u001b', '\u2028', '\u2029', '\u0085'].filter((c) => out.includes(c))).toEqual([]);
    expect(out).toMatch(/^a\\(n|u000a)b\\u001b\[2J\\u2028\\u2029\\u0085c$/);
  });
});
