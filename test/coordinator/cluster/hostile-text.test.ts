// Hostile review: text a registry writer or a worker chose, as it reaches people (printable and
// oneLine, `kmoe cluster status`, the "no live worker" error). Each expectation below failed at the
// reviewed commit (1ee49b9).

import { describe, expect, it } from 'vitest';
import { PlacementTable } from '../../../coordinator/cluster/placement.js';
import { formatClusterStatus } from '../../../coordinator/cluster/registry/cluster-status.js';
import { oneLine, printable } from '../../../shared/text/printable.js';

/** Invisible format characters that hide or smuggle text (Unicode general category Cf). */
const HIDDEN = [
  '\u00ad', // soft hyphen
  '\u180e', // Mongolian vowel separator
  '\u200b', // zero width space
  '\u200c', // zero width non-joiner
  '\u200d', // zero width joiner
  '\u2060', // word joiner
  '\u2061', // invisible function application
  '\u206a', // inhibit symmetric swapping (deprecated format control)
  '\ufeff', // zero width no-break space
  '\ufff9', // interlinear annotation anchor
  '\u{e0041}', // tag latin capital A: invisible ASCII copy ("ASCII smuggling")
];

describe('printable and oneLine', () => {
  for (const c of HIDDEN) {
    const name = `U+${c.codePointAt(0)!.toString(16).padStart(4, '0')}`;
    it(`escape ${name}, an invisible format character`, () => {
      expect(/\p{Cf}/u.test(printable(`a${c}b`))).toBe(false);
      expect(/\p{Cf}/u.test(oneLine(`a${c}b`))).toBe(false);
    });
  }
});

describe('kmoe cluster status', () => {
  it("quotes a registry record's id, url and fingerprint (no newline, escape or bidi control reaches the terminal)", () => {
    const text = formatClusterStatus({
      registry: 'redis://127.0.0.1:6379',
      workers: [
        {
          id: 'evil\nforged-1                        ready     0-7  \u001b[8m',
          url: 'ws://127.0.0.1:1/\u202eexe.tpircs\n\u001b[2J',
          status: 'loading',
          experts: [],
          device: 'cpu',
          expertWeights: 'fp32',
          threads: 1,
          fingerprint: '\u001b[31mRED',
          heartbeatAgeMs: 0,
          pairsPerSec: 0,
          tokensPerSec: 0,
        },
      ],
      models: [
        {
          fingerprint: '\u001b[31mRED\u001b[0m',
          numExperts: 1,
          covered: true,
          missing: [],
          experts: [{ expert: 0, replicas: 1, holders: ['x'], pairsPerSec: 0 }],
          layers: [],
        },
      ],
      pairsPerSec: 0,
      tokensPerSec: 0,
    });
    expect(text.includes('\u001b') || text.includes('\u202e')).toBe(false);
    expect(text.split('\n').some((l) => l.startsWith('forged-1'))).toBe(false);
  });
});

describe('the error of a step whose experts have no live worker', () => {
  it('stays bounded however many dead worker URLs the registry listed', () => {
    const url = (i: number) => `ws://127.0.0.1:9/${'x'.repeat(1900)}${i}`;
    const workers = [
      { url: 'ws://127.0.0.1:1', experts: [0] },
      ...Array.from({ length: 1000 }, (_, i) => ({ url: url(i), experts: [0] })),
      { url: 'ws://127.0.0.1:2', experts: [1] },
    ];
    const table = PlacementTable.of(workers, 2);
    const live = workers.map(() => false);
    let message = '';
    try {
      table.checkCovered(
        {
          numTokens: 1,
          offsets: Int32Array.of(0, 1),
          experts: Int32Array.of(1),
          weights: Float32Array.of(1),
        },
        live,
      );
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/have no live worker/);
    // Observed: 1.9 MB (every URL, each up to 2,000 characters, listed raw).
    expect(message.length).toBeLessThan(10_000);
  });
});
