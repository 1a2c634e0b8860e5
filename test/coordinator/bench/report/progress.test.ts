// Progress bar: line format, redraw throttling on a TTY, sparse plain lines for logs, and a
// final 100% line; driven by a fake clock and a fake stream so nothing sleeps.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { ProgressBarError } from '../../../../coordinator/bench/report/errors.js';
import {
  formatDuration,
  formatRate,
  PhaseBars,
  ProgressBar,
} from '../../../../coordinator/bench/report/progress.js';

class FakeStream {
  readonly chunks: string[] = [];
  constructor(
    readonly isTTY: boolean,
    readonly columns?: number,
  ) {}
  write(chunk: string): boolean {
    this.chunks.push(chunk);
    return true;
  }
}

function setup(opts: { tty: boolean; total: number; columns?: number }) {
  const stream = new FakeStream(opts.tty, opts.columns);
  let t = 0;
  const clock = { set: (ms: number) => (t = ms) };
  const bar = new ProgressBar({
    label: 'eval',
    total: opts.total,
    unit: 'windows',
    rate: { unit: 'tok', perItem: 512 },
    stream,
    now: () => t,
  });
  return { stream, clock, bar };
}

describe('ProgressBar on a TTY', () => {
  it('redraws one line with bar, percent, count, rate and ETA', () => {
    const { stream, clock, bar } = setup({ tty: true, total: 800 });
    clock.set(1000);
    bar.update(100, 'ppl 6.71');
    // 100 windows in 1 s = 51200 tok/s; 700 windows left at 100/s = 7 s.
    expect(stream.chunks).toEqual([
      '\reval [##------------------] 12% 100/800 windows 51k tok/s ETA 7s ppl 6.71\x1b[K',
    ]);
  });

  it('draws at most every 100 ms', () => {
    const { stream, clock, bar } = setup({ tty: true, total: 800 });
    for (let ms = 0; ms <= 1000; ms += 10) {
      clock.set(ms);
      bar.tick();
    }
    // Ticks at 0, 100, ..., 1000 ms get drawn: 11 of the 101.
    expect(stream.chunks).toHaveLength(11);
    expect(stream.chunks.every((c) => c.startsWith('\r') && !c.includes('\n'))).toBe(true);
  });

  it('finishes with 100%, the elapsed time and a newline, unthrottled', () => {
    const { stream, clock, bar } = setup({ tty: true, total: 800 });
    clock.set(50);
    bar.update(400);
    clock.set(150);
    bar.update(799);
    expect(stream.chunks.at(-1)).toContain(' 99% 799/800');
    clock.set(200);
    bar.update(800);
    bar.finish();
    // The update at 200 ms was throttled; finish() still shows the final state, with the
    // whole-run rate (800 windows x 512 tok in 0.2 s).
    expect(stream.chunks).toHaveLength(3);
    expect(stream.chunks[2]).toBe(
      '\reval [####################] 100% 800/800 windows 2.0M tok/s in 0s\x1b[K\n',
    );
  });

  it('keeps the last extra until replaced and fits the terminal width', () => {
    const { stream, clock, bar } = setup({ tty: true, total: 10, columns: 40 });
    clock.set(1000);
    bar.tick(1, 'loss 2.5');
    clock.set(2000);
    bar.tick();
    expect(stream.chunks[1]).toBe(
      `\r${'eval [####----------------] 20% 2/10 windows 1.0k tok/s ETA 8s loss 2.5'.slice(0, 39)}\x1b[K`,
    );
    const wide = setup({ tty: true, total: 10 });
    wide.clock.set(1000);
    wide.bar.tick(1, 'loss 2.5');
    wide.clock.set(2000);
    wide.bar.tick();
    expect(wide.stream.chunks[1]).toContain(' ETA 8s loss 2.5\x1b[K');
  });

  it('estimates the rate from the last ~10 s so warm-up stops skewing the ETA', () => {
    const { stream, clock, bar } = setup({ tty: true, total: 310 });
    clock.set(20_000);
    bar.tick(10);
    for (let s = 21; s <= 40; s++) {
      clock.set(s * 1000);
      bar.tick(10);
    }
    // 210 windows in 40 s overall (5.25/s), but 10/s over the last 10 s: 100 left -> 10 s.
    expect(stream.chunks.at(-1)).toContain('210/310 windows 5.1k tok/s ETA 10s');
  });
});

describe('ProgressBar on a pipe or log file', () => {
  it('prints a plain line at each 10% and at finish', () => {
    const { stream, clock, bar } = setup({ tty: false, total: 50 });
    for (let i = 1; i <= 50; i++) {
      clock.set(i * 10);
      bar.tick();
    }
    bar.finish();
    const pct = stream.chunks.map((c) => /\] (\d+)%/.exec(c)?.[1]);
    expect(pct).toEqual(['10', '20', '30', '40', '50', '60', '70', '80', '90', '100']);
    expect(stream.chunks.every((c) => c.endsWith('\n') && !c.includes('\r') && !c.includes('\x1b'))).toBe(
      true,
    );
    expect(stream.chunks.at(-1)).toBe('eval [####################] 100% 50/50 windows 51k tok/s in 1s\n');
  });

  it('prints at most every 5 s between 10% steps', () => {
    const { stream, clock, bar } = setup({ tty: false, total: 1000 });
    for (let s = 1; s <= 30; s++) {
      clock.set(s * 1000);
      bar.tick();
    }
    expect(stream.chunks.map((c) => /(\d+)\/1000/.exec(c)?.[1])).toEqual(['5', '10', '15', '20', '25', '30']);
  });

  it('reports the real count when finished early', () => {
    const { stream, clock, bar } = setup({ tty: false, total: 800 });
    clock.set(2000);
    bar.update(336);
    bar.finish('interrupted');
    expect(stream.chunks.at(-1)).toBe(
      'eval [########------------] 42% 336/800 windows 86k tok/s in 2s interrupted\n',
    );
  });
});

describe('ProgressBar contract', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('writes to stderr by default and never to stdout', () => {
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const bar = new ProgressBar({ label: 'calibrate', total: 2 });
    bar.tick(2);
    bar.finish();
    const stdoutCalls = out.mock.calls.length;
    const stderrText = err.mock.calls.map((c) => String(c[0])).join('');
    vi.restoreAllMocks();
    expect(stdoutCalls).toBe(0);
    expect(stderrText).toContain('calibrate [####################] 100% 2/2');
  });

  it('rejects bad counts and updates after finish; finish is idempotent', () => {
    const { stream, bar } = setup({ tty: false, total: 3 });
    expect(() => bar.tick(-1)).toThrow(ProgressBarError);
    expect(() => bar.update(Number.NaN)).toThrow(ProgressBarError);
    bar.finish();
    bar.finish();
    expect(stream.chunks).toHaveLength(1);
    expect(() => bar.tick()).toThrow(/after finish/);
    expect(() => new ProgressBar({ label: 'x', total: -1, stream })).toThrow(ProgressBarError);
  });

  it('treats an empty job as complete', () => {
    const { stream, bar } = setup({ tty: false, total: 0 });
    bar.finish();
    expect(stream.chunks[0]).toContain('[####################] 100% 0/0 windows');
  });
});

describe('formatting', () => {
  it('formats rates with two significant figures', () => {
    expect([0.25, 3.44, 87.2, 5120, 51_200, 1.2e7].map(formatRate)).toEqual([
      '0.25',
      '3.4',
      '87',
      '5.1k',
      '51k',
      '12M',
    ]);
  });

  it('formats durations compactly', () => {
    expect([0.4, 12, 185, 3725].map(formatDuration)).toEqual(['0s', '12s', '3m05s', '1h02m']);
  });
});

describe('PhaseBars', () => {
  it('gives each phase its own bar with its unit and closes a phase when the next one starts', () => {
    const stream = new FakeStream(false);
    const bars = new PhaseBars((phase) => (phase === 'signals' ? 'windows' : 'evaluations'), stream);
    bars.update('signals', 2, 4);
    const beforeSearch = stream.chunks.length;
    bars.update('search', 1, 10, 'best avgK 1.900');
    const closing = stream.chunks.slice(beforeSearch).join('');
    // The signals bar is finished (at its own count of windows) before the search bar starts.
    expect(closing.indexOf('signals')).toBeGreaterThanOrEqual(0);
    expect(closing.indexOf('signals')).toBeLessThan(closing.indexOf('search'));
    expect(closing).toContain('windows');
    bars.finish();
    const all = stream.chunks.join('');
    expect(all).toContain('evaluations');
    expect(all).toContain('best avgK 1.900');
  });
});
