// The places for worker handshakes the remote expert backend may have open at once: joins,
// reconnects of lost workers and retries of URLs whose first join failed each take one. A URL that
// accepts TCP and never answers holds its place for the whole handshake timeout, so without a bound
// a registry holding n such records keeps n sockets open; with one first-come queue, a real
// worker's join would wait behind all of their timeouts. One endpoint (host and port) has at most
// one handshake open: URLs that differ only in their path are one worker, so n aliases of one
// silent endpoint in the registry hold one place, not n.

/** Joins' handshakes open at a time (a join: someone waits for its outcome). */
export const MAX_JOIN_HANDSHAKES = 8;
/** Background handshakes (reconnects and retries, which nobody waits for) open at a time. */
export const MAX_BACKGROUND_HANDSHAKES = 4;

/**
 * Why a handshake is wanted: a join; the reconnect of a worker whose last handshake completed (its
 * connection dropped since); the background retry of a URL whose last attempt failed or that never
 * answered (what a stale or hostile registry record produces). A reconnect that fails makes the
 * next attempt a retry, so a URL that answered once and then went silent cannot keep the reconnect
 * priority: it would otherwise take every background place ahead of real workers' retries.
 */
export type HandshakeKind = 'join' | 'reconnect' | 'retry';

const RANK: Readonly<Record<HandshakeKind, number>> = { join: 0, reconnect: 1, retry: 2 };

export interface HandshakeTicket {
  /** True once the place is held (release it when the handshake ends); false if released first. */
  readonly granted: Promise<boolean>;
  /** While waiting, moves the ticket to a more urgent kind (a join of a URL waiting to retry). */
  promote(kind: HandshakeKind): void;
  /** Gives the place back, or leaves the queue; a second call does nothing. */
  release(): void;
  /**
   * Leaves the queue if still waiting (granted resolves false); a held place stays held until the
   * handshake on it ends and releases it, so that socket still counts.
   */
  withdraw(): void;
}

interface Entry {
  rank: number;
  /** Host and port: one handshake open per endpoint. */
  readonly endpoint: string;
  state: 'waiting' | 'held' | 'done';
  /** The rank it was granted at (its place is given back to that pool). */
  heldAs: number;
  resolve(granted: boolean): void;
}

/**
 * Two pools, so that background work never takes a join's place: joins wait only for other joins
 * (at most MAX_JOIN_HANDSHAKES at once, in arrival order), never for silent URLs' retries to time
 * out; background handshakes have their own MAX_BACKGROUND_HANDSHAKES places, where a freed place
 * goes to the longest-waiting reconnect, else to the longest-waiting retry, skipping entries
 * whose endpoint already has a handshake open. At most the sum of the two is open in all. (One shared pool would let
 * retries hold places a burst of first joins needs: a real worker's join behind n silent records
 * would wait more than n / 8 handshake bounds.)
 */
export class HandshakePlaces {
  private joins = 0;
  private background = 0;
  /** Waiting entries per rank, in arrival order. */
  private readonly queues: Entry[][] = [[], [], []];
  /** Endpoints with a handshake open. */
  private readonly busy = new Set<string>();

  constructor(
    private readonly maxJoins = MAX_JOIN_HANDSHAKES,
    private readonly maxBackground = MAX_BACKGROUND_HANDSHAKES,
  ) {}

  /** `endpoint`: what the URL connects to (host and port, endpointOf); its path does not count. */
  request(kind: HandshakeKind, endpoint: string): HandshakeTicket {
    let resolve!: (granted: boolean) => void;
    const granted = new Promise<boolean>((r) => {
      resolve = r;
    });
    const entry: Entry = { rank: RANK[kind], endpoint, state: 'waiting', heldAs: -1, resolve };
    this.queues[entry.rank]!.push(entry);
    this.pump();
    return {
      granted,
      promote: (k) => {
        if (entry.state !== 'waiting' || RANK[k] >= entry.rank) return;
        this.unqueue(entry);
        entry.rank = RANK[k];
        this.queues[entry.rank]!.push(entry);
        this.pump();
      },
      withdraw: () => {
        if (entry.state !== 'waiting') return;
        this.unqueue(entry);
        entry.state = 'done';
        entry.resolve(false);
      },
      release: () => {
        if (entry.state === 'waiting') {
          this.unqueue(entry);
          entry.state = 'done';
          entry.resolve(false);
        } else if (entry.state === 'held') {
          entry.state = 'done';
          if (entry.heldAs === 0) this.joins--;
          else this.background--;
          this.busy.delete(entry.endpoint);
          this.pump();
        }
      },
    };
  }

  private unqueue(entry: Entry): void {
    const q = this.queues[entry.rank]!;
    q.splice(q.indexOf(entry), 1);
  }

  /**
   * Grants the free places of each pool to its longest-waiting, most urgent entries whose endpoint
   * has no handshake open (those wait their turn without holding up the others).
   */
  private pump(): void {
    for (;;) {
      const join = this.joins < this.maxJoins ? this.takeFree(this.queues[0]!) : undefined;
      const next =
        join ??
        (this.background < this.maxBackground
          ? (this.takeFree(this.queues[1]!) ?? this.takeFree(this.queues[2]!))
          : undefined);
      if (!next) return;
      if (join) this.joins++;
      else this.background++;
      this.busy.add(next.endpoint);
      next.state = 'held';
      next.heldAs = next.rank;
      next.resolve(true);
    }
  }

  /** Takes the first entry of `queue` whose endpoint is free. */
  private takeFree(queue: Entry[]): Entry | undefined {
    const i = queue.findIndex((e) => !this.busy.has(e.endpoint));
    return i < 0 ? undefined : queue.splice(i, 1)[0];
  }
}

/**
 * The endpoint a worker URL connects to: scheme, host and port (defaulted by the scheme). Paths,
 * queries and fragments select nothing on a worker, so URLs differing only there are one endpoint.
 */
export function endpointOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    // Not parsed here: the connection attempt reports it; such a URL is its own endpoint.
    return url;
  }
}
