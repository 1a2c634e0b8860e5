// Expert sets on command lines and in ready lines: parse/format round-trip, even splits, errors.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatExpertSet, parseExpertSet, splitExperts } from '../../../shared/protocol/expert-set.js';
import { formatReadyLine, parseReadyLine } from '../../../shared/protocol/ready-line.js';

describe('expert sets', () => {
  it('parses ranges and lists, sorted and without duplicates', () => {
    expect(parseExpertSet('0-3')).toEqual([0, 1, 2, 3]);
    expect(parseExpertSet('5-7, 0,2,6')).toEqual([0, 2, 5, 6, 7]);
    expect(formatExpertSet([7, 0, 1, 2, 5, 6])).toBe('0-2,5-7');
  });

  it('format and parse are inverse', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.nat(63), { minLength: 1 }), (xs) => {
        expect(parseExpertSet(formatExpertSet(xs))).toEqual([...xs].sort((a, b) => a - b));
      }),
    );
  });

  it('rejects malformed sets and experts the model does not have', () => {
    expect(() => parseExpertSet('')).toThrow(/empty/);
    expect(() => parseExpertSet('3-1')).toThrow(/backwards/);
    expect(() => parseExpertSet('a')).toThrow(/not an index or a range/);
    expect(() => parseExpertSet('0-8', 8)).toThrow(/expert 8 does not exist: the model has 8/);
  });

  it('splits experts evenly in contiguous ranges', () => {
    expect(splitExperts(8, 4)).toEqual([
      [0, 1],
      [2, 3],
      [4, 5],
      [6, 7],
    ]);
    expect(splitExperts(8, 3)).toEqual([
      [0, 1, 2],
      [3, 4, 5],
      [6, 7],
    ]);
    expect(() => splitExperts(8, 9)).toThrow(/cannot split 8 experts over 9 workers/);
  });

  it('ready lines round-trip and other lines are ignored', () => {
    const line = formatReadyLine({ url: 'ws://127.0.0.1:4321', experts: [0, 1, 2, 3] });
    expect(line).toBe('kmoe worker ready ws://127.0.0.1:4321 experts 0-3');
    expect(parseReadyLine(line)).toEqual({ url: 'ws://127.0.0.1:4321', experts: [0, 1, 2, 3] });
    expect(parseReadyLine('kmoe worker: loading experts 0-3')).toBeUndefined();
  });
});
