// InlineCalls runs a thread's handlers in the caller's thread with serveThread's call order: queued
// calls one at a time in arrival order (even when a handler awaits), `concurrent` methods at once.

import { describe, expect, it } from 'vitest';
import { type Handlers, InlineCalls } from '../../../shared/runtime/thread-rpc.js';

type Schema = {
  step: [string, string];
  slow: [number, string];
  fail: [null, null];
};

function recorder(log: string[]): Handlers<Schema> {
  return {
    async step(name) {
      log.push(`start ${name}`);
      await new Promise((r) => setTimeout(r, 5));
      log.push(`end ${name}`);
      return { result: name.toUpperCase() };
    },
    async slow(ms) {
      log.push('start slow');
      await new Promise((r) => setTimeout(r, ms));
      log.push('end slow');
      return { result: 'slow done' };
    },
    fail() {
      throw new RangeError('no such thing');
    },
  };
}

describe('InlineCalls', () => {
  it('runs queued calls one at a time in arrival order, though each awaits', async () => {
    const log: string[] = [];
    const calls = new InlineCalls(recorder(log));
    const results = await Promise.all([
      calls.call('step', 'a'),
      calls.call('step', 'b'),
      calls.call('step', 'c'),
    ]);
    expect(results).toEqual(['A', 'B', 'C']);
    expect(log).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  });

  it('starts a concurrent method at once, beside the queue', async () => {
    const log: string[] = [];
    const calls = new InlineCalls(recorder(log), { concurrent: ['slow'] });
    // Long enough that a loaded machine's late timers cannot end it before the two 5 ms steps.
    const slow = calls.call('slow', 1000);
    const steps = Promise.all([calls.call('step', 'a'), calls.call('step', 'b')]);
    expect(await steps).toEqual(['A', 'B']);
    expect(log).toEqual(['start slow', 'start a', 'end a', 'start b', 'end b']);
    expect(await slow).toBe('slow done');
  });

  it('rejects with the handler error and keeps serving the calls after it', async () => {
    const log: string[] = [];
    const calls = new InlineCalls(recorder(log));
    const failed = calls.call('fail', null);
    const after = calls.call('step', 'x');
    await expect(failed).rejects.toThrow(RangeError);
    await expect(failed).rejects.toThrow('no such thing');
    expect(await after).toBe('X');
  });
});
