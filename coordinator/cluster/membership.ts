// Who is in the cluster: the worker URLs to connect to, and word when one joins or leaves. A fixed
// list (StaticMembership) or the Redis registry (registry/redis-membership.ts).

/** A member left: its process exited, or it deregistered. */
export interface MemberLeft {
  readonly url: string;
  /** For people: "worker 0 (ws://127.0.0.1:4001) exited (SIGKILL)". */
  readonly reason: string;
  /**
   * It did not leave by itself: its registry record expired (no heartbeat for a TTL), so it is
   * frozen, dead or cut off, and the requests it still has are failed over at once instead of
   * waiting out the dispatch timeout. Absent: it left by itself (announced, or its process exited)
   * and answers, or has answered, what it has.
   */
  readonly expired?: true;
}

/** A member joined after the start (or came back): connect to it and route to it. */
export interface MemberJoined {
  readonly url: string;
  readonly experts: readonly number[];
  /** For people: "worker host-12-ab (ws://10.0.0.2:7070) registered". */
  readonly reason: string;
}

export interface Membership {
  /** The workers' ws:// URLs, in a stable order. */
  members(): readonly string[];
  /** Calls `listener` for every member that left, past ones first. */
  onLeave(listener: (e: MemberLeft) => void): void;
  /** Calls `listener` for every member that joins from now on (a fixed list never has any). */
  onJoin(listener: (e: MemberJoined) => void): void;
}

/** A fixed list of URLs (`--workers ws://a,ws://b`, or the workers this process started). */
export class StaticMembership implements Membership {
  private readonly left: MemberLeft[] = [];
  private readonly listeners: ((e: MemberLeft) => void)[] = [];

  constructor(private readonly urls: readonly string[]) {}

  members(): readonly string[] {
    return this.urls;
  }

  onLeave(listener: (e: MemberLeft) => void): void {
    for (const e of this.left) listener(e);
    this.listeners.push(listener);
  }

  onJoin(_listener: (e: MemberJoined) => void): void {}

  /** Records that a member left (the process that started it saw it exit). */
  leave(e: MemberLeft): void {
    if (this.left.some((l) => l.url === e.url)) return;
    this.left.push(e);
    for (const l of this.listeners) l(e);
  }
}
