// A wait that a signal ends early (a worker leaving, a `--watch` loop stopped), with its listener
// removed either way: a loop that waits on one signal round after round does not pile them up.

/**
 * Waits `ms` unless `signal` aborts first; whether it waited the whole time. `unref`: the timer
 * alone does not keep the process alive (a background task's wait).
 */
export function waitUnlessAborted(
  ms: number,
  signal: AbortSignal,
  o: { unref?: boolean } = {},
): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    if (o.unref === true) timer.unref();
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
