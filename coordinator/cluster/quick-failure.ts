// Whether a failed connection attempt cost the other handshakes nothing: such a failure keeps a
// reconnect's rank (remote-expert-backend.ts, handshake-places.ts), any other loses it.

/**
 * A failed attempt shorter than this keeps a reconnect's rank: a refused connection takes a round
 * trip. A twentieth of the handshake bound, at most 250 ms: a peer that fails its attempts just
 * under the limit holds a place that long per attempt (40 such endpoints: about 2.5 s of waiting
 * for a real reconnect at the default 10 s bound), where half a bound let it hold 5 s per attempt.
 */
function quickFailureMs(handshakeTimeoutMs: number): number {
  return Math.min(250, handshakeTimeoutMs / 20);
}

/**
 * Whether a failed attempt was quick: within quickFailureMs, or refused (nothing listens: the peer
 * accepted nothing, so held nothing) within half the bound. The attempt is timed on this event
 * loop, which sees a refusal as late as it is busy: timed alone, a coordinator busy for 250 ms at a
 * time saw a restarting worker's refusals as slow failures, and its reconnect lost its rank: it
 * then waits behind every queued retry (once 23.7 s behind 40 silent records' retries at a 3 s
 * bound, where its rank allows 11; a full CI run once saw 17.4 s). A peer cannot delay
 * its own refusal short of dropping SYNs and forging the reset later; half a bound caps that.
 */
export function quickFailure(err: unknown, ms: number, handshakeTimeoutMs: number): boolean {
  if (ms < quickFailureMs(handshakeTimeoutMs)) return true;
  const cause = err instanceof Error ? (err.cause as NodeJS.ErrnoException | undefined) : undefined;
  return cause?.code === 'ECONNREFUSED' && ms < handshakeTimeoutMs / 2;
}
