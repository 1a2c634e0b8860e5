// A budget for a log line whose text an outsider can change at will (a registry record's URL, a
// peer's refusal message): said at once the first few times, then at most once per interval, and
// the lines held back are counted on the next one said, so nothing is dropped without a trace.

export class LineBudget {
  /**
   * Time earned towards lines, in ms: a line costs `everyMs`, at most `burst` of them are banked.
   * Kept in ms, not lines, so that sums of whole milliseconds stay exact.
   */
  private creditMs: number;
  private at: number;
  private held = 0;

  constructor(
    private readonly burst: number,
    private readonly everyMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.creditMs = burst * everyMs;
    this.at = now();
  }

  /**
   * Whether to say the line now; when it is said, how many were held back since the last one said
   * (the caller logs that count with it). `fresh`: the text is new since the last call, so holding
   * it back counts; a caller asking again for a text already held back (to say the current state
   * once it may) passes false.
   */
  take(fresh = true): { readonly say: true; readonly held: number } | { readonly say: false } {
    const t = this.now();
    this.creditMs = Math.min(this.burst * this.everyMs, this.creditMs + (t - this.at));
    this.at = t;
    if (this.creditMs < this.everyMs) {
      if (fresh) this.held++;
      return { say: false };
    }
    this.creditMs -= this.everyMs;
    const held = this.held;
    this.held = 0;
    // The line said is one of those counted, unless it was asked for again.
    return { say: true, held: fresh ? held : Math.max(0, held - 1) };
  }
}

/**
 * A line said when its text changes, within a LineBudget: it keeps the text last said (not said
 * again) and the last one offered (a held-back text offered again is not counted twice).
 */
export class ChangingLine {
  private said = '';
  private seen = '';

  constructor(private readonly budget: LineBudget) {}

  /**
   * Whether to say `text` now: undefined if not (said last, or over the budget), else how many
   * changed texts were held back before it.
   */
  offer(text: string): number | undefined {
    if (text === this.said) return undefined;
    const r = this.budget.take(text !== this.seen);
    this.seen = text;
    if (!r.say) return undefined;
    this.said = text;
    return r.held;
  }

  /** Forgets what was said: the same text is said again (within the budget). */
  forget(): void {
    this.said = '';
    this.seen = '';
  }
}
