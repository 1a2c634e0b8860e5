// A reader that stopped reading (`kmoe generate ... | head`, a closed pipe). Most commands exit at
// once, as a pipeline member does. A command whose work is inside an onnxruntime call on another
// thread must not be cut by process.exit mid-call (onnxruntime-node then aborts the process:
// "terminate called after throwing an instance of 'Napi::Error'"), so it registers here, stops at
// its next boundary and closes its engine, and the process ends when it returns.

const stoppers = new Set<() => void>();
let closed = false;

/** Calls `stop` once stdout's reader is gone (at once if it already is); returns the unregistration. */
export function whenStdoutCloses(stop: () => void): () => void {
  if (closed) stop();
  stoppers.add(stop);
  return () => stoppers.delete(stop);
}

/** For main's EPIPE handler: tells the registered commands; false if none will stop by itself. */
export function stdoutClosed(): boolean {
  if (!closed) {
    closed = true;
    for (const stop of stoppers) stop();
  }
  return stoppers.size > 0;
}
