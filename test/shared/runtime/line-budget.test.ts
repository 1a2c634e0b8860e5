// LineBudget on a clock the test sets: a burst said at once, then one per interval, and the lines
// held back counted on the next one said.

import { describe, expect, it } from 'vitest';
import { ChangingLine, LineBudget } from '../../../shared/runtime/line-budget.js';

describe('LineBudget', () => {
  it('says a burst, then one line per interval, counting those held back', () => {
    let t = 0;
    const b = new LineBudget(3, 30_000, () => t);
    expect([b.take(), b.take(), b.take()]).toEqual([
      { say: true, held: 0 },
      { say: true, held: 0 },
      { say: true, held: 0 },
    ]);
    // A churner changing the text every second for a minute: two more lines, not sixty.
    const said: number[] = [];
    for (let s = 1; s <= 60; s++) {
      t = s * 1000;
      const r = b.take();
      if (r.say) said.push(r.held);
    }
    expect(said).toEqual([29, 29]);
  });

  it('earns no more than its burst back while nothing is said', () => {
    let t = 0;
    const b = new LineBudget(2, 1000, () => t);
    b.take();
    b.take();
    expect(b.take()).toEqual({ say: false });
    t = 3_600_000;
    expect([b.take(), b.take(), b.take()]).toEqual([
      { say: true, held: 1 },
      { say: true, held: 0 },
      { say: false },
    ]);
  });

  it('earns a line per interval from the moment it stopped being full', () => {
    let t = 0;
    const b = new LineBudget(1, 1000, () => t);
    expect(b.take()).toEqual({ say: true, held: 0 });
    t = 1500;
    expect(b.take()).toEqual({ say: true, held: 0 });
    t = 2499;
    expect(b.take()).toEqual({ say: false });
    t = 2500;
    expect(b.take()).toEqual({ say: true, held: 1 });
  });

  it('counts a text held back once, however often it is asked for again', () => {
    let t = 0;
    const b = new LineBudget(1, 1000, () => t);
    expect(b.take()).toEqual({ say: true, held: 0 });
    // Two new texts held back, the second asked for again on every poll until it may be said.
    expect(b.take()).toEqual({ say: false });
    expect(b.take()).toEqual({ say: false });
    t = 500;
    expect(b.take(false)).toEqual({ say: false });
    t = 1000;
    // Said now: the text asked for again is one of the two held back, so one other was not said.
    expect(b.take(false)).toEqual({ say: true, held: 1 });
  });
});

describe('ChangingLine', () => {
  it('says a text once, a changed one within the budget, and the same one again after forget', () => {
    let t = 0;
    const line = new ChangingLine(new LineBudget(1, 1000, () => t));
    expect(line.offer('a')).toBe(0);
    expect(line.offer('a')).toBeUndefined();
    // Changed, over the budget: held back, and counted once however often it is offered.
    expect(line.offer('b')).toBeUndefined();
    expect(line.offer('b')).toBeUndefined();
    t = 1000;
    // Said now; 'b' itself is the one held back, so none other was lost.
    expect(line.offer('b')).toBe(0);
    t = 2000;
    line.forget();
    expect(line.offer('b')).toBe(0);
  });
});
