// Telling text from binary token ids: the shipped corpora as both, and the edges of the rule.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { looksLikeText } from '../../../shared/text/looks-like-text.js';
import { EVAL_DIR } from '../../helpers/paths.js';

describe('looksLikeText', () => {
  it.each(['valid.docs', 'valid.code', 'valid.man'])('calls %s.txt text and %s.u16 not', (name) => {
    expect(looksLikeText(readFileSync(`${EVAL_DIR}/${name}.txt`))).toBe(true);
    expect(looksLikeText(readFileSync(`${EVAL_DIR}/${name}.u16`))).toBe(false);
  });

  it('takes UTF-8 beyond ASCII, and a character cut by the end of the sample', () => {
    const text = Buffer.from('naïve café — ünïcode\n'.repeat(4000));
    expect(text.length).toBeGreaterThan(64 * 1024);
    expect(looksLikeText(text)).toBe(true);
    // 'é' is two bytes: cut after the first of them.
    expect(looksLikeText(Buffer.from('café').subarray(0, 4))).toBe(true);
  });

  it('refuses invalid UTF-8, mostly control bytes and nothing at all', () => {
    expect(looksLikeText(Uint8Array.from([0x68, 0x69, 0xff, 0x68]))).toBe(false);
    expect(looksLikeText(Uint8Array.from([1, 0, 2, 0, 3, 0, 4, 0]))).toBe(false);
    expect(looksLikeText(new Uint8Array(0))).toBe(false);
  });

  it('allows a few stray control characters in a long text, not many', () => {
    const few = `${'a'.repeat(97)}\u0000\u0001\u0002`;
    expect(looksLikeText(Buffer.from(few))).toBe(true);
    const many = `${'a'.repeat(90)}${'\u0000'.repeat(10)}`;
    expect(looksLikeText(Buffer.from(many))).toBe(false);
  });
});
