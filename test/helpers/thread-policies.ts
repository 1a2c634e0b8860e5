// The scheduling policy of every thread of a process, from /proc (Linux): 0 SCHED_NORMAL, 3 SCHED_BATCH.

import { readdirSync, readFileSync } from 'node:fs';

export const SCHED_NORMAL = 0;
export const SCHED_BATCH = 3;

export function threadPolicies(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch (err) {
      // The thread ended between the listing and the read (a CI run saw it): it has no policy now.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ESRCH')
        return [];
      throw err;
    }
    // Field 41 (policy); the command name (field 2) may hold spaces: count from its ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return [Number(fields[41 - 3])];
  });
}
