// Window ranges of a corpus: what --windows accepts, and warm-ups that stay inside a range.

import { describe, expect, it } from 'vitest';
import { CorpusError, leadingWindows, parseWindowRange } from '../../../shared/data/token-ids.js';

describe('parseWindowRange', () => {
  it('reads START:END with either side open, and the two halves', () => {
    expect(parseWindowRange('2:5', 10)).toEqual({ start: 2, end: 5 });
    expect(parseWindowRange(':3', 10)).toEqual({ start: 0, end: 3 });
    expect(parseWindowRange('7:', 10)).toEqual({ start: 7, end: 10 });
    expect(parseWindowRange(undefined, 10)).toEqual({ start: 0, end: 10 });
    expect(parseWindowRange('first-half', 11)).toEqual({ start: 0, end: 5 });
    expect(parseWindowRange('second-half', 11)).toEqual({ start: 5, end: 11 });
  });

  it('refuses a malformed, empty or out-of-corpus range with a CorpusError', () => {
    expect(() => parseWindowRange('abc', 10)).toThrow(CorpusError);
    expect(() => parseWindowRange('5:3', 10)).toThrow(/window range 5:3 is empty or beyond the 10 windows/);
    expect(() => parseWindowRange('4:4', 10)).toThrow(CorpusError);
    expect(() => parseWindowRange('0:11', 10)).toThrow(CorpusError);
  });
});

describe('leadingWindows', () => {
  it('takes the first n windows of a range, or all of a shorter one', () => {
    expect(leadingWindows({ start: 3, end: 20 }, 4)).toEqual({ start: 3, end: 7 });
    // The last window of a corpus: a 4-window warm-up must not run past it (bench dispatch did).
    expect(leadingWindows({ start: 1974, end: 1975 }, 4)).toEqual({ start: 1974, end: 1975 });
    expect(leadingWindows({ start: 0, end: 2 }, 2)).toEqual({ start: 0, end: 2 });
  });
});
