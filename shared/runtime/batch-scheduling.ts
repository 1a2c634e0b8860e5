// SCHED_BATCH for a process that computes for a coordinator on the same host. A socket write wakes
// its reader synchronously, and the kernel runs the woken task on the writer's core, preempting the
// writer: a coordinator that sends one layer's requests to two local workers was preempted inside
// the first write by the first worker, which computed its share before the second request was
// even sent (CPU profile, 16 streams: 582 ms of 6.2 s inside writev; 200 ms with batch workers).
// A woken SCHED_BATCH task does not preempt; it runs when the writer blocks. Measured through
// `kmoe serve`, 2 local workers, paired runs: 1.06x tokens/s at 16 streams, 1.00x at 1
// (docs/performance.md).

import { execFileSync } from 'node:child_process';
import { KmoeError } from '../errors/kmoe-error.js';

export class SchedulingError extends KmoeError {}

/**
 * Puts every thread of this process under SCHED_BATCH (threads created later inherit it).
 * @throws SchedulingError when the host cannot (not Linux, no chrt, refused).
 */
export function useBatchScheduling(): void {
  if (process.platform !== 'linux')
    throw new SchedulingError(`SCHED_BATCH is a Linux policy; this is ${process.platform}`, {
      hint: 'leave --sched at normal',
    });
  try {
    execFileSync('chrt', ['--all-tasks', '--batch', '--pid', '0', String(process.pid)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    const why =
      e.code === 'ENOENT'
        ? 'chrt (util-linux) is not on the PATH'
        : (e.stderr?.toString().trim() ?? e.message);
    throw new SchedulingError(`cannot set SCHED_BATCH: ${why}`, {
      hint: 'install util-linux (or put chrt on the PATH), or use --sched normal or auto',
      cause: err,
    });
  }
}
