// Token-id corpora: ids the model's vocabulary must have, window ranges (what --windows accepts),
// and warm-ups that stay inside a range.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CorpusError,
  checkIdsInVocabulary,
  leadingWindows,
  parseWindowRange,
  readU16Ids,
} from '../../../shared/data/token-ids.js';

const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-token-ids-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function corpusError(check: () => unknown): CorpusError {
  try {
    check();
  } catch (err) {
    expect(err).toBeInstanceOf(CorpusError);
    return err as CorpusError;
  }
  throw new Error('expected a CorpusError');
}

describe('checkIdsInVocabulary', () => {
  it('passes ids below the vocabulary size, the last one included', () => {
    expect(() => checkIdsInVocabulary('a.u16', Uint16Array.from([0, 1, 4095]), 4096)).not.toThrow();
  });

  it('names the file, the first id outside, its position and byte, and how many are outside', () => {
    const err = corpusError(() =>
      checkIdsInVocabulary('a.u16', Uint16Array.from([1, 2, 5000, 3, 4096]), 4096),
    );
    expect(err.message).toBe(
      "a.u16: 2 of its 5 ids are outside the model's vocabulary of 4096 ids, the first 5000 at position 2 (byte 4)",
    );
    expect(err.details).toEqual({ file: 'a.u16', position: 2, id: 5000, vocabSize: 4096 });
    const one = corpusError(() => checkIdsInVocabulary('b.u16', Uint16Array.from([7, 4096]), 4096));
    expect(one.message).toBe(
      "b.u16: 1 of its 2 ids is outside the model's vocabulary of 4096 ids, the first 4096 at position 1 (byte 2)",
    );
  });

  it('says when the ids are the bytes of a text file read in pairs', async () => {
    // An even-sized text read as .u16: 'he' is 0x6568 = 25960, far beyond 4096. 130 bytes, 65 ids;
    // 'd\n' (0x0a64 = 2660, every other line) is the only pair below 4096: 60 are outside.
    const file = path.join(dir, 'even.txt');
    writeFileSync(file, 'hello, world\n'.repeat(10));
    const ids = await readU16Ids(file);
    const err = corpusError(() => checkIdsInVocabulary(file, ids, 4096));
    expect(err.message).toBe(
      `${file}: 60 of its 65 ids are outside the model's vocabulary of 4096 ids, the first 25960 at ` +
        'position 0 (byte 0); it looks like a text file, not token ids',
    );
  });

  it('says the same of an odd-sized text file, which fails before any id is read', async () => {
    const file = path.join(dir, 'odd.txt');
    writeFileSync(file, 'abc');
    await expect(readU16Ids(file)).rejects.toThrow(
      `${file} has 3 bytes, an odd number; a .u16 file holds 2 bytes per token id; it looks like a text file, not token ids`,
    );
    const binary = path.join(dir, 'odd.u16');
    writeFileSync(binary, Uint8Array.from([1, 0, 2]));
    await expect(readU16Ids(binary)).rejects.toThrow(
      /an odd number; a \.u16 file holds 2 bytes per token id$/,
    );
  });
});

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
