// How late this thread's event loop has been to run what was due: sampled by a timer while someone
// observes (a connection attempt), not otherwise, so an idle coordinator is not woken for it.
// A failure seen late because the loop was busy, or the process was not scheduled (a loaded
// machine), says nothing about the peer; time the loop spent idle waiting for the peer does.

/** Sampling period while observed. */
const TICK_MS = 20;
/** Samples kept: a bit over the longest handshake bound anyone sets in practice (60 s). */
const KEPT = 4096;

export class LoopLateness {
  /** Ring of (when, how late) samples, oldest first once full. */
  private readonly at = new Float64Array(KEPT);
  private readonly late = new Float64Array(KEPT);
  private next = 0;
  private count = 0;
  private timer: NodeJS.Timeout | undefined;
  private due = 0;
  private observers = 0;

  /**
   * Starts an observation; the function returned gives the most the loop was late at once since
   * then (ms), the tick overdue now included, and a second call to `end` stops observing.
   */
  observe(): { readonly lateness: () => number; readonly end: () => void } {
    const since = performance.now();
    if (this.observers++ === 0) this.startTicking();
    let ended = false;
    return {
      lateness: () => this.maxSince(since),
      end: () => {
        if (ended) return;
        ended = true;
        if (--this.observers === 0) this.stopTicking();
      },
    };
  }

  private startTicking(): void {
    this.due = performance.now() + TICK_MS;
    const tick = () => {
      const now = performance.now();
      this.record(now, Math.max(0, now - this.due));
      this.due = now + TICK_MS;
      this.timer = setTimeout(tick, TICK_MS);
      this.timer.unref();
    };
    this.timer = setTimeout(tick, TICK_MS);
    this.timer.unref();
  }

  private stopTicking(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private record(at: number, late: number): void {
    this.at[this.next] = at;
    this.late[this.next] = late;
    this.next = (this.next + 1) % KEPT;
    this.count = Math.min(KEPT, this.count + 1);
  }

  private maxSince(since: number): number {
    const now = performance.now();
    // A tick due but not yet run: the loop is that late right now (a busy stretch just ended).
    let worst = this.timer === undefined ? 0 : Math.max(0, now - this.due);
    for (let i = 0; i < this.count; i++) {
      const j = (this.next - 1 - i + KEPT) % KEPT;
      if (this.at[j]! < since) break;
      worst = Math.max(worst, this.late[j]!);
    }
    return worst;
  }
}
