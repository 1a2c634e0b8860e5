// Whether a failed connection attempt cost the other handshakes nothing: such a failure keeps a
// reconnect's rank (remote-expert-backend.ts, handshake-places.ts), any other loses it.

/**
 * A failed attempt shorter than this keeps a reconnect's rank: a refused connection takes a round
 * trip. A twentieth of the handshake bound, at most 250 ms: a peer that fails its attempts just
 * under the limit holds a place that long per attempt (40 such endpoints: about 2.5 s of waiting
 * for a real reconnect at the default 10 s bound), where half a bound let it hold 5 s per attempt.
 */
export function quickFailureMs(handshakeTimeoutMs: number): number {
  return Math.min(250, handshakeTimeoutMs / 20);
}

/**
 * Whether an attempt that failed after `elapsedMs` was quick, given that this thread's event loop
 * was up to `latenessMs` late to run what was due meanwhile (LoopLateness): a refusal is seen only
 * when the loop gets to it, so a busy loop or a process the machine did not schedule makes a quick
 * refusal look slow. Timed alone, a coordinator busy 250 ms at a time counted a restarting
 * worker's refusals as slow failures and its reconnect lost its rank, waiting behind every queued
 * retry (once 23.7 s behind 40 silent records at a 3 s bound, where its rank allows 11; a full CI
 * run once saw 17.4 s). Time spent waiting for a peer (a slow name server, SYNs dropped by a full
 * accept queue, addresses tried one by one) leaves the loop idle and on time, so it counts. A peer
 * can still add lateness by making this thread compute: a wss:// peer offering only 8192-bit DHE
 * stalled it about 290 ms per handshake in a review and kept its rank at the 10 s bound (not at
 * 2 s); the handshakes run on the engine thread (docs/expert-parallelism.md, "Not done here").
 * (A first fix excused any ECONNREFUSED within half a bound: a review delayed its own refusals by
 * those three means, kept 40 URLs' rank, and held a real reconnect back 7-8 s at a 2 s bound.)
 */
export function quickFailure(elapsedMs: number, latenessMs: number, handshakeTimeoutMs: number): boolean {
  return elapsedMs - latenessMs < quickFailureMs(handshakeTimeoutMs);
}
