// Which policies kmoe bench dispatch runs: native top-K and the three adaptive specs always, and
// each --routing policy once, so one that names an always-run policy (however spelled) is dropped.

import { describe, expect, it } from 'vitest';
import { policiesToRun } from '../../../coordinator/bench/bench-dispatch.js';

const ALWAYS = ['topk:2', 'entropy:1,2@1.04', 'topp:0.7@1-2', 'ratio:0.3'];

describe('policiesToRun', () => {
  it('runs an extra policy after the always-run ones', () => {
    expect(policiesToRun('topk:2', ['topk:1', 'profiles/recommended.json'])).toEqual({
      routings: [...ALWAYS, 'topk:1', 'profiles/recommended.json'],
      repeats: [],
    });
  });

  it('drops an extra that is the baseline or an always-run spec, however spelled, naming what it is', () => {
    expect(policiesToRun('topk:2', ['topk:02', 'topk:1', 'ratio:0.30', 'topp:0.7'])).toEqual({
      routings: [...ALWAYS, 'topk:1', 'topp:0.7'],
      repeats: [
        ['topk:02', 'topk:2'],
        ['ratio:0.30', 'ratio:0.3'],
      ],
    });
    // The baseline follows the model: topk:2 is an extra policy on a top-1 model.
    expect(policiesToRun('topk:1', ['topk:2']).routings).toEqual(['topk:1', ...ALWAYS.slice(1), 'topk:2']);
  });
});
