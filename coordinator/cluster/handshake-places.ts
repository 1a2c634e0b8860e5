// The places for worker handshakes the remote expert backend may have open at once: joins,
// reconnects of lost workers and retries of URLs whose first join failed each take one. A URL that
// accepts TCP and never answers holds its place for the whole handshake timeout, so without a bound
// a registry holding n such records keeps n sockets open; with one first-come queue, a real
// worker's join would wait behind all of their timeouts. One endpoint (host and port) has at most
// one background handshake open: URLs that differ only in their path reach one process, so n
// aliases of one silent endpoint in the registry hold one background place, not n.

/** Joins' handshakes open at a time (a join: someone waits for its outcome). */
export const MAX_JOIN_HANDSHAKES = 8;
/** Background handshakes (reconnects and retries, which nobody waits for) open at a time. */
export const MAX_BACKGROUND_HANDSHAKES = 4;

/**
 * Why a handshake is wanted: a join; the reconnect of a worker whose connection was up for a while
 * before it dropped; the background retry of any other URL (one that never answered, whose last
 * attempt timed out, or whose connection dropped soon after its handshake: what a stale or hostile
 * registry record produces). remote-expert-backend.ts decides which.
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
  /** Its queue while waiting; fixed once held (promote moves waiting entries only). */
  rank: number;
  /** Scheme, host and port: one background handshake open per endpoint. */
  readonly endpoint: string;
  state: 'waiting' | 'held' | 'done';
  resolve(granted: boolean): void;
}

/**
 * Two pools, so that background work never takes a join's place: joins wait only for other joins
 * (at most MAX_JOIN_HANDSHAKES at once, in arrival order), never for silent URLs' retries to time
 * out; background handshakes have their own MAX_BACKGROUND_HANDSHAKES places (pump says who gets
 * them). At most the sum of the two is open in all. (One shared pool would let retries hold
 * places a burst of first joins needs: a real worker's join behind n silent records would wait
 * more than n / 8 handshake bounds.)
 */
export class HandshakePlaces {
  private joins = 0;
  private background = 0;
  /** Waiting entries per rank, in arrival order. */
  private readonly queues: Entry[][] = [[], [], []];
  /** Handshakes open per endpoint. */
  private readonly busy = new Map<string, number>();
  /** Background places held by retries. */
  private retries = 0;

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
    const entry: Entry = { rank: RANK[kind], endpoint, state: 'waiting', resolve };
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
      withdraw: () => this.withdraw(entry),
      release: () => {
        if (entry.state === 'waiting') this.withdraw(entry);
        else if (entry.state === 'held') {
          entry.state = 'done';
          if (entry.rank === RANK.join) this.joins--;
          else this.background--;
          if (entry.rank === RANK.retry) this.retries--;
          const open = this.busy.get(entry.endpoint)! - 1;
          if (open === 0) this.busy.delete(entry.endpoint);
          else this.busy.set(entry.endpoint, open);
          this.pump();
        }
      },
    };
  }

  private withdraw(entry: Entry): void {
    if (entry.state !== 'waiting') return;
    this.unqueue(entry);
    entry.state = 'done';
    entry.resolve(false);
  }

  private unqueue(entry: Entry): void {
    const q = this.queues[entry.rank]!;
    q.splice(q.indexOf(entry), 1);
  }

  /**
   * Grants the free places of each pool. Joins go in arrival order whatever their endpoint (each
   * holds one of the membership's few join slots while it waits, so making it wait for an alias
   * would stall every join behind it). Background places go to the longest-waiting reconnect, else
   * retry, whose endpoint has no handshake open (others wait without holding anyone up); but while
   * retries wait and none holds a place, the next place is a retry's, so reconnects that keep coming
   * back (a relay that completes handshakes and drops) cannot keep retries out for good.
   */
  private pump(): void {
    for (;;) {
      const join = this.joins < this.maxJoins ? this.queues[0]!.shift() : undefined;
      const next = join ?? (this.background < this.maxBackground ? this.nextBackground() : undefined);
      if (!next) return;
      if (join) this.joins++;
      else this.background++;
      if (next.rank === RANK.retry) this.retries++;
      this.busy.set(next.endpoint, (this.busy.get(next.endpoint) ?? 0) + 1);
      next.state = 'held';
      next.resolve(true);
    }
  }

  private nextBackground(): Entry | undefined {
    const [, reconnects, retries] = this.queues as [Entry[], Entry[], Entry[]];
    if (this.retries === 0) {
      const retry = this.takeFree(retries);
      if (retry) return retry;
    }
    return this.takeFree(reconnects) ?? this.takeFree(retries);
  }

  /** Takes the first entry of `queue` whose endpoint has no handshake open. */
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
