// Open connections per client: one client must not hold every connection slot (--max-connections)
// of `kmoe serve` or `kmoe worker`, e.g. with connections that never finish their headers or stay
// idle. A connection over the cap is closed at once, before Node's parser reads a byte of it.

import type { Socket } from 'node:net';

/** At most one warning per this long, however many connections are refused. */
const WARN_INTERVAL_MS = 10_000;

export interface ClientConnectionEvents {
  /** A connection from `address` was closed for being over the cap. */
  refused(address: string): void;
  /** Rate-limited: `count` connections were refused since the last call, the latest from `address`. */
  warn(address: string, count: number): void;
}

/**
 * The client an address belongs to, for the cap: an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`,
 * what a dual-stack listener sees) is its IPv4 address, and an IPv6 address counts as its /64, the
 * smallest network a site is given (one host can use any address in it). Anything else as it is.
 */
export function clientOf(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(':')) return address;
  const bare = address.split('%')[0]!.toLowerCase();
  const [head, tail] = bare.includes('::') ? bare.split('::') : [bare, undefined];
  const front = head === '' ? [] : head!.split(':');
  const back = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...front, ...Array<string>(Math.max(0, 8 - front.length - back.length)).fill('0'), ...back];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

export class ClientConnections {
  readonly #open = new Map<string, number>();
  #refusedSinceWarning = 0;
  #lastWarning = Number.NEGATIVE_INFINITY;

  /** @param max open connections per address at once; 0: no cap (validated by the CLI) */
  constructor(
    readonly max: number,
    private readonly events: ClientConnectionEvents,
  ) {}

  /** Counts a new connection until it closes, or closes it at once when its address is at the cap. */
  admit(socket: Socket): void {
    // No address: the socket is already gone (the peer reset it before it was accepted).
    const remote = socket.remoteAddress;
    if (this.max === 0 || remote === undefined) return;
    const address = clientOf(remote);
    const open = this.#open.get(address) ?? 0;
    if (open >= this.max) {
      socket.destroy();
      this.events.refused(address);
      this.#refusedSinceWarning++;
      const now = performance.now();
      if (now - this.#lastWarning >= WARN_INTERVAL_MS) {
        this.#lastWarning = now;
        this.events.warn(address, this.#refusedSinceWarning);
        this.#refusedSinceWarning = 0;
      }
      return;
    }
    this.#open.set(address, open + 1);
    socket.once('close', () => {
      const left = this.#open.get(address)! - 1;
      if (left === 0) this.#open.delete(address);
      else this.#open.set(address, left);
    });
  }
}
