// Parents re-emit their children's pino records into their own stream: level, message and fields
// kept, the child named; a line that is not a record (a native library's message) kept as text.

import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { logLineText, relayLogLine } from '../../../shared/runtime/logger.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n'))
        if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'info', base: { component: 'parent' } }, sink), lines };
}

describe('relayLogLine', () => {
  it("re-emits a child's record at its level with its fields, under the parent's component", async () => {
    const { log, lines } = capture();
    const child = JSON.stringify({
      level: 40,
      time: 1,
      pid: 7,
      hostname: 'h',
      component: 'kmoe-worker',
      reason: 'version',
      msg: 'refused coordinator 127.0.0.1:5: protocol version 1 does not match',
    });
    relayLogLine(log, child, { worker: 1 });
    relayLogLine(log, 'onnxruntime: some native warning', { worker: 0 });
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({
      level: 40,
      component: 'parent',
      worker: 1,
      reason: 'version',
      msg: 'refused coordinator 127.0.0.1:5: protocol version 1 does not match',
    });
    // The child's own pino fields are the parent's to set, not copied.
    expect(lines[0]).not.toHaveProperty('pid');
    expect(lines[0]).not.toHaveProperty('hostname');
    expect(lines[1]).toMatchObject({ level: 40, worker: 0, msg: 'onnxruntime: some native warning' });
  });

  it('drops records below the parent level', async () => {
    const { log, lines } = capture();
    relayLogLine(log, JSON.stringify({ level: 20, time: 1, msg: 'debug detail' }), { worker: 0 });
    await new Promise((r) => setImmediate(r));
    expect(lines).toEqual([]);
  });
});

describe('logLineText', () => {
  it("gives a record's message, with the level from warn up and the error's message", () => {
    expect(
      logLineText(
        JSON.stringify({ level: 30, time: 1, component: 'kmoe-worker', msg: 'loading experts 0-3' }),
      ),
    ).toBe('loading experts 0-3');
    expect(logLineText(JSON.stringify({ level: 40, time: 1, msg: 'bad frame from a' }))).toBe(
      'warn: bad frame from a',
    );
    expect(
      logLineText(
        JSON.stringify({ level: 50, time: 1, err: { message: 'boom', stack: 'x' }, msg: 'internal error' }),
      ),
    ).toBe('error: internal error: boom');
  });

  it('keeps a line that is not a record', () => {
    expect(logLineText('onnxruntime: some native warning')).toBe('onnxruntime: some native warning');
    expect(logLineText('{not json')).toBe('{not json');
  });
});
