// Long-running commands started by npm (`npx kmoe serve &`, `npm run kmoe -- serve`) stop when npm
// does. npm runs a bin as `npm exec -> sh -c kmoe -> node`; `kill %1` without job control signals
// npm only, npm passes SIGTERM to the shell, and the shell dies without passing it on: node is
// reparented and keeps serving, with its workers. So a command that npm started treats the loss
// of its parent as SIGTERM, and its own SIGTERM handling (drain, stop the workers) runs.

const POLL_MS = 250;

/**
 * Sends SIGTERM to this process once its parent is gone, if npm started it (`npm_command` is set
 * in the environment of everything npm runs); otherwise does nothing, so `nohup kmoe serve &`
 * outlives its shell as usual. Returns a function that stops watching: call it once shutdown has
 * begun, so that the parent exiting then (it stops us) does not deliver a second SIGTERM to a
 * process whose one-shot handler already ran.
 */
export function stopWithParent(env: NodeJS.ProcessEnv = process.env): () => void {
  if (env['npm_command'] === undefined) return () => {};
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    process.kill(process.pid, 'SIGTERM');
  }, POLL_MS);
  // Never the reason the process stays alive.
  timer.unref();
  return () => clearInterval(timer);
}
