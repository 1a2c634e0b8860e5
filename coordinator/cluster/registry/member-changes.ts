// The order in which the registry's joins and leaves are applied: the changes of one worker URL one
// after another in arrival order (a leave must not overtake the join it undoes), the changes of
// different URLs side by side, so a record whose URL never answers holds up its own URL only.

import { MAX_JOIN_HANDSHAKES } from '../handshake-places.js';

/**
 * Joins that may wait for a handshake at once. A join of a URL that accepts TCP and never answers
 * holds its place for the whole handshake timeout: a few places let a real worker through behind
 * several such records, while a registry holding thousands of them (hostile or stale) has at most
 * this many joins handed to the engine at a time (each adds a worker slot there); the others wait
 * their turn. The engine bounds the handshakes themselves, and on places of their own its
 * background retries of URLs whose first join failed (handshake-places.ts).
 */
export const MAX_CONCURRENT_JOINS = MAX_JOIN_HANDSHAKES;

export class MemberChanges {
  /** Per URL, the last change queued (removed once it is done and still the last). */
  private readonly tails = new Map<string, Promise<void>>();
  private joining = 0;
  private readonly waiting: (() => void)[] = [];

  /** `onError` hears of a change that failed; the changes after it still run. */
  constructor(
    private readonly onError: (url: string, err: unknown) => void,
    private readonly maxJoins = MAX_CONCURRENT_JOINS,
  ) {}

  /** Runs `join` after the changes of `url` queued before it, once a join place is free. */
  join(url: string, join: () => Promise<void>): void {
    this.after(url, async () => {
      if (this.joining >= this.maxJoins) await new Promise<void>((r) => this.waiting.push(r));
      else this.joining++;
      try {
        await join();
      } finally {
        // The place passes to the next waiting join, or is given back.
        const next = this.waiting.shift();
        if (next) next();
        else this.joining--;
      }
    });
  }

  /** Runs `leave` after the changes of `url` queued before it. */
  leave(url: string, leave: () => Promise<void>): void {
    this.after(url, leave);
  }

  private after(url: string, change: () => Promise<void>): void {
    const tail = (this.tails.get(url) ?? Promise.resolve())
      .then(change)
      .catch((err: unknown) => this.onError(url, err))
      .finally(() => {
        if (this.tails.get(url) === tail) this.tails.delete(url);
      });
    this.tails.set(url, tail);
  }
}
