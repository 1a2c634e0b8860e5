// The last-resort handlers in a real Node process: an unhandled rejection is logged and the
// process keeps running; an uncaught exception is logged at fatal level, the drain callback runs,
// and the process exits with status 70.

import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../../helpers/paths.js';

function run(body: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = `
    import { pino } from 'pino';
    import { installLastResortHandlers } from './coordinator/server/last-resort.ts';
    const log = pino({ level: 'info' }, pino.destination({ fd: 2, sync: true }));
    installLastResortHandlers(log, async () => { process.stdout.write('drained\\n'); });
    ${body}
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

describe('last-resort handlers', () => {
  it('log an unhandled rejection and keep the process running', async () => {
    const r = await run(`
      Promise.reject(new Error('stray rejection'));
      setTimeout(() => { process.stdout.write('still running\\n'); }, 100);
    `);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('still running\n');
    const line = JSON.parse(r.stderr.trim().split('\n')[0]!) as {
      level: number;
      msg: string;
      err: { message: string };
    };
    expect(line).toMatchObject({ level: 50, err: { message: 'stray rejection' } });
    expect(line.msg).toMatch(/keeps running/);
  });

  it('log an uncaught exception, drain, and exit 70', async () => {
    const r = await run(`
      setTimeout(() => { throw new Error('bug in a callback'); }, 10);
      setTimeout(() => { process.stdout.write('not reached\\n'); }, 5000);
    `);
    expect(r.code).toBe(70);
    expect(r.stdout).toBe('drained\n');
    const line = JSON.parse(r.stderr.trim().split('\n')[0]!) as { level: number; err: { message: string } };
    expect(line).toMatchObject({ level: 60, err: { message: 'bug in a callback' } });
  });
});
