// Who is in the cluster: the worker URLs to connect to, and word when one leaves. Today a fixed list
// (StaticMembership); the Redis registry implements the same interface later.

/** A member left: its process exited, or it deregistered. */
export interface MemberLeft {
  readonly url: string;
  /** For people: "worker 0 (ws://127.0.0.1:4001) exited (SIGKILL)". */
  readonly reason: string;
}

export interface Membership {
  /** The workers' ws:// URLs, in a stable order. */
  members(): readonly string[];
  /** Calls `listener` for every member that left, past ones first. */
  onLeave(listener: (e: MemberLeft) => void): void;
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

  /** Records that a member left (the process that started it saw it exit). */
  leave(e: MemberLeft): void {
    if (this.left.some((l) => l.url === e.url)) return;
    this.left.push(e);
    for (const l of this.listeners) l(e);
  }
}
