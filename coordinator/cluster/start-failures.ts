// The start-up's failed handshakes, named in the coverage error they caused. A coordinator started
// from a registry connects to the workers that complete the handshake and skips the rest (a stale
// record, a relay refused for its URL, another model's worker); when those it skipped held experts
// no one else holds, the operator needs to read why each was skipped, not only which experts are
// missing.

import { listed } from '../../shared/text/listed.js';
import { oneLine } from '../../shared/text/printable.js';
import { PlacementError } from './errors.js';

/** Failed handshakes quoted in the error; the rest are counted. */
const FAILURES_QUOTED = 4;

/**
 * `err` (the placement error of the workers that connected) with the skipped workers' handshake
 * errors appended; any other error unchanged.
 */
export function withFailedHandshakes(err: unknown, failures: readonly unknown[]): unknown {
  if (!(err instanceof PlacementError) || failures.length === 0) return err;
  const quoted = listed(failures, FAILURES_QUOTED, (f) =>
    oneLine(f instanceof Error ? f.message : String(f)),
  );
  const n = failures.length === 1 ? 'a worker' : `${failures.length.toLocaleString('en-US')} workers`;
  return new PlacementError(
    `${err.message}; the handshake${failures.length === 1 ? '' : 's'} of ${n} failed: ${quoted}`,
    {
      missing: (err.details.missing as readonly number[] | undefined) ?? [],
      ...(err.hint === undefined ? {} : { hint: err.hint }),
    },
  );
}
