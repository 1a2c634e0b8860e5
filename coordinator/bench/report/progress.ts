// Progress output for long CLI commands (perplexity eval, calibration, benchmarks). Writes to
// stderr so stdout stays clean for results/JSON: a redrawn one-line bar on a terminal, and
// occasional plain lines when piped into a log file or CI.

import { ProgressBarError } from './errors.js';

/** The part of a stream the bar uses; process.stderr satisfies it, and so does a test double. */
export interface ProgressStream {
  write(chunk: string): boolean;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export interface ProgressBarOptions {
  readonly label: string;
  readonly total: number;
  /** What is being counted, e.g. "windows"; also the rate unit unless `rate` is given. */
  readonly unit?: string;
  /**
   * Show throughput in a derived unit, e.g. { unit: 'tok', perItem: 512 } for 512-token eval
   * windows prints "5.1k tok/s". Items must be uniform; put variable amounts in `extra`.
   */
  readonly rate?: { readonly unit: string; readonly perItem: number };
  readonly stream?: ProgressStream;
  /** Millisecond clock; injectable so tests can check throttling without sleeping. */
  readonly now?: () => number;
}

// ~10 redraws/s looks live without spending measurable time in write().
const TTY_INTERVAL_MS = 100;
// Logs are read after the fact: a line every 5 s or every 10% is enough to see progress and stalls.
const PLAIN_INTERVAL_MS = 5000;
const PLAIN_STEP_PERCENT = 10;
// Rate over the last 10 s, so the one-off warm-up (session creation, first compile) stops
// distorting the ETA once the run settles.
const RATE_WINDOW_MS = 10_000;
const SAMPLE_EVERY_MS = 250;
const BAR_WIDTH = 20;

interface Sample {
  readonly t: number;
  readonly done: number;
}

export class ProgressBar {
  private readonly label: string;
  private readonly total: number;
  private readonly unit: string;
  private readonly rateUnit: string;
  private readonly ratePerItem: number;
  private readonly stream: ProgressStream;
  private readonly tty: boolean;
  private readonly now: () => number;
  private readonly start: number;
  private done = 0;
  private extra = '';
  private samples: Sample[] = [];
  /** When the last line was written; throttling is measured from here. */
  private lastDraw: number;
  private lastPrintedStep = 0;
  private finished = false;

  constructor(opts: ProgressBarOptions) {
    if (!Number.isFinite(opts.total) || opts.total < 0)
      throw new ProgressBarError(
        `progress bar "${opts.label}": total must be a finite number >= 0, got ${opts.total}`,
      );
    if (opts.rate !== undefined && !(Number.isFinite(opts.rate.perItem) && opts.rate.perItem > 0))
      throw new ProgressBarError(
        `progress bar "${opts.label}": rate.perItem must be > 0, got ${opts.rate.perItem}`,
      );
    this.label = opts.label;
    this.total = opts.total;
    this.unit = opts.unit ?? '';
    this.rateUnit = opts.rate?.unit ?? (this.unit === '' ? 'it' : this.unit);
    this.ratePerItem = opts.rate?.perItem ?? 1;
    this.stream = opts.stream ?? process.stderr;
    this.tty = this.stream.isTTY === true;
    this.now = opts.now ?? (() => performance.now());
    this.start = this.now();
    this.lastDraw = this.tty ? Number.NEGATIVE_INFINITY : this.start;
    this.samples.push({ t: this.start, done: 0 });
  }

  /** Count `n` more items done. `extra` replaces the trailing note; omit it to keep the last one. */
  tick(n = 1, extra?: string): void {
    if (!Number.isFinite(n) || n < 0)
      throw new ProgressBarError(`progress bar "${this.label}": tick(${n}) needs a finite count >= 0`);
    this.update(this.done + n, extra);
  }

  /** Set the absolute number of items done. */
  update(done: number, extra?: string): void {
    if (this.finished)
      throw new ProgressBarError(`progress bar "${this.label}" was updated after finish()`, {
        hint: 'create a new ProgressBar for the next phase',
      });
    if (!Number.isFinite(done) || done < 0)
      throw new ProgressBarError(`progress bar "${this.label}": update(${done}) needs a finite count >= 0`);
    const t = this.now();
    // A count that goes backwards (a retried batch) would make the windowed rate negative.
    if (done < this.done) this.samples = [];
    this.done = done;
    if (extra !== undefined) this.extra = extra;
    this.recordSample(t);
    if (this.tty) {
      if (t - this.lastDraw < TTY_INTERVAL_MS) return;
      this.lastDraw = t;
      this.stream.write(`\r${this.fit(this.line(t, false))}\x1b[K`);
      return;
    }
    // Completion is reported by finish(), with the total time, rather than twice.
    if (this.done >= this.total) return;
    const step = Math.floor(this.percent() / PLAIN_STEP_PERCENT);
    if (t - this.lastDraw < PLAIN_INTERVAL_MS && step <= this.lastPrintedStep) return;
    this.lastDraw = t;
    this.lastPrintedStep = step;
    this.stream.write(`${this.line(t, false)}\n`);
  }

  /** Print the final state (always, unthrottled) with the elapsed time, and end the line. */
  finish(extra?: string): void {
    if (this.finished) return;
    this.finished = true;
    if (extra !== undefined) this.extra = extra;
    const line = this.line(this.now(), true);
    this.stream.write(this.tty ? `\r${this.fit(line)}\x1b[K\n` : `${line}\n`);
  }

  private recordSample(t: number): void {
    const last = this.samples[this.samples.length - 1];
    if (last === undefined || t - last.t >= SAMPLE_EVERY_MS) this.samples.push({ t, done: this.done });
    // Keep one sample older than the window so the rate always spans a full window once it can.
    while (this.samples.length > 2 && t - this.samples[1]!.t >= RATE_WINDOW_MS) this.samples.shift();
  }

  /** Items per second over the recent window, or undefined before any time has passed. */
  private recentRate(t: number): number | undefined {
    const first = this.samples[0];
    if (first === undefined || t <= first.t) return undefined;
    return Math.max(0, (this.done - first.done) / ((t - first.t) / 1000));
  }

  private percent(): number {
    if (this.total === 0) return 100;
    // Floor, so 799/800 reads 99% and 100% appears only when the work is really done.
    return Math.min(100, Math.floor((this.done / this.total) * 100));
  }

  private line(t: number, final: boolean): string {
    const pct = this.percent();
    const filled = Math.round((pct / 100) * BAR_WIDTH);
    const parts = [
      this.label,
      `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}]`,
      `${pct}%`,
      `${this.done}/${this.total}${this.unit === '' ? '' : ` ${this.unit}`}`,
    ];
    const elapsed = (t - this.start) / 1000;
    // The final line reports the whole-run average; while running, the recent rate predicts better.
    const rate = final ? (elapsed > 0 ? this.done / elapsed : undefined) : this.recentRate(t);
    if (rate !== undefined) parts.push(`${formatRate(rate * this.ratePerItem)} ${this.rateUnit}/s`);
    if (final) parts.push(`in ${formatDuration(elapsed)}`);
    else if (rate !== undefined && rate > 0 && this.done < this.total)
      parts.push(`ETA ${formatDuration((this.total - this.done) / rate)}`);
    if (this.extra !== '') parts.push(this.extra);
    return parts.join(' ');
  }

  /** A line wider than the terminal wraps, and then \r can no longer return to its start. */
  private fit(line: string): string {
    const cols = this.stream.columns;
    if (cols === undefined || cols <= 1 || line.length < cols) return line;
    return line.slice(0, cols - 1);
  }
}

/** 0.25, 3.4, 87, 5.1k, 12M: two significant figures is all a glance at a rate needs. */
/**
 * One bar per phase of a multi-phase job (calibration: signals, then search): the first update of
 * a new phase finishes the bars before it; `unitOf` names what each phase counts.
 */
export class PhaseBars {
  private readonly bars = new Map<string, ProgressBar>();

  constructor(
    private readonly unitOf: (phase: string) => string,
    private readonly stream?: ProgressStream,
  ) {}

  update(phase: string, done: number, total: number, note?: string): void {
    let bar = this.bars.get(phase);
    if (!bar) {
      this.finish();
      bar = new ProgressBar({
        label: phase,
        total,
        unit: this.unitOf(phase),
        ...(this.stream ? { stream: this.stream } : {}),
      });
      this.bars.set(phase, bar);
    }
    bar.update(done, note);
  }

  finish(): void {
    for (const bar of this.bars.values()) bar.finish();
  }
}

export function formatRate(perSecond: number): string {
  const units: readonly [number, string][] = [
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ];
  for (const [scale, suffix] of units) {
    if (perSecond >= scale) return formatMantissa(perSecond / scale) + suffix;
  }
  return formatMantissa(perSecond);
}

function formatMantissa(v: number): string {
  if (v < 1) return v.toFixed(2);
  if (v < 10) return v.toFixed(1);
  return v.toFixed(0);
}

/** 12s, 3m05s, 1h02m. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
