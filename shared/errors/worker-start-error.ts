// Raised when a worker process started by this one (kmoe local-cluster) exits or stays silent
// before printing its ready line. Carries the end of its stderr, which says why.

import { KmoeError } from './kmoe-error.js';

export class WorkerStartError extends KmoeError {
  constructor(what: string, stderrTail: readonly string[]) {
    const tail = stderrTail.length > 0 ? `; its last messages:\n  ${stderrTail.join('\n  ')}` : '';
    super(`${what}${tail}`);
  }
}
