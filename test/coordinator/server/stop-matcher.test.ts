// Stop strings over streamed text: for any chunking, the emitted text equals cutting the whole
// text so far at the first chunk where a stop string occurs, although only a tail that could
// still become a stop string is ever held back.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StopMatcher } from '../../../coordinator/server/stop-matcher.js';

/** Emitted text for `text` split into `chunks`, and whether a stop string ended it. */
function run(stops: string[], chunks: string[]): { text: string; stopped: boolean } {
  const m = new StopMatcher(stops);
  let text = '';
  for (const chunk of chunks) {
    const r = m.push(chunk);
    text += r.text;
    if (r.stopped) return { text, stopped: true };
  }
  return { text: text + m.flush(), stopped: false };
}

/**
 * The specification, on the whole text so far: generation stops at the first chunk after which
 * some stop string occurs, and the output is cut at the earliest such occurrence.
 */
function expected(stops: string[], chunks: string[]): { text: string; stopped: boolean } {
  let full = '';
  for (const chunk of chunks) {
    full += chunk;
    const hits = stops.map((s) => full.indexOf(s)).filter((i) => i >= 0);
    if (hits.length > 0) return { text: full.slice(0, Math.min(...hits)), stopped: true };
  }
  return { text: full, stopped: false };
}

// A small alphabet makes partial and overlapping matches common.
const piece = fc.string({ unit: fc.constantFrom('a', 'b', 'c', '\n'), minLength: 0, maxLength: 6 });
const stop = fc.string({ unit: fc.constantFrom('a', 'b', 'c', '\n'), minLength: 1, maxLength: 4 });

describe('StopMatcher', () => {
  it('emits the text before the first stop string, for any chunking', () => {
    fc.assert(
      fc.property(
        fc.array(stop, { minLength: 1, maxLength: 4 }),
        fc.array(piece, { maxLength: 12 }),
        (stops, chunks) => {
          expect(run(stops, chunks)).toEqual(expected(stops, chunks));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('holds back only a tail that could still become a stop string', () => {
    const m = new StopMatcher(['</answer>']);
    expect(m.push('42 </ans')).toEqual({ text: '42 ', stopped: false });
    expect(m.push('wer> more')).toEqual({ text: '', stopped: true });
    const n = new StopMatcher(['</answer>']);
    expect(n.push('a </b')).toEqual({ text: 'a </b', stopped: false });
    expect(n.push('<')).toEqual({ text: '', stopped: false });
    expect(n.flush()).toBe('<');
  });

  it('picks the earliest match when several stop strings occur', () => {
    expect(run(['world', 'lo'], ['hello world'])).toEqual({ text: 'hel', stopped: true });
  });

  it('passes everything through without stop strings and refuses empty ones', () => {
    expect(run([], ['a', 'b'])).toEqual({ text: 'ab', stopped: false });
    expect(() => new StopMatcher([''])).toThrow(RangeError);
  });
});
