// Starts a real `kmoe serve` child process on a free loopback port for tests, waits for its URL
// line, and stops it (SIGTERM, then SIGKILL if it hangs) so no test leaves a server behind.

import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { KMOE_ARGV, MODEL_DIR, ROOT } from '../../helpers/paths.js';

export interface ServeProcess {
  readonly url: string;
  readonly child: ChildProcess;
  /** Everything the server logged to stderr so far (pino JSON lines). */
  stderr(): string;
  /** Every line the server wrote to stdout so far. */
  stdout(): string;
  /** Resolves with the exit code once the process has ended. */
  readonly exited: Promise<number | null>;
  /** SIGTERM, waits for the exit (SIGKILL after `timeoutMs`), returns the exit code. */
  stop(timeoutMs?: number): Promise<number | null>;
}

/**
 * `detached`: the server leads its own process group, as a command started at a terminal does.
 * `defaultThreads`: no `--threads 1` (which tests otherwise pass to keep 2-core machines responsive).
 * `--port 0` and `--threads 1` are added only where `args` has none (kmoe refuses a flag given twice).
 * `onStarted`: the process as soon as it is spawned, with its stderr so far (for a server that waits
 * before it listens).
 */
export function startServe(
  args: readonly string[],
  model = MODEL_DIR,
  env?: NodeJS.ProcessEnv,
  opts: {
    readonly detached?: boolean;
    readonly defaultThreads?: boolean;
    readonly onStarted?: (p: { readonly child: ChildProcess; stderr(): string }) => void;
  } = {},
): Promise<ServeProcess> {
  const threads = opts.defaultThreads === true || args.includes('--threads') ? [] : ['--threads', '1'];
  const port = args.includes('--port') ? [] : ['--port', '0'];
  const child = spawn(
    process.execPath,
    [...KMOE_ARGV, 'serve', '--model', model, ...port, ...threads, ...args],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(env === undefined ? {} : { env }),
      detached: opts.detached ?? false,
    },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  opts.onStarted?.({ child, stderr: () => stderr });
  let stdout = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async (timeoutMs = 30_000): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kmoe serve printed no URL within 60 s; stderr:\n${stderr}`));
    }, 60_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      stdout += `${line}\n`;
      const m = /^kmoe serve listening on (http:\/\/\S+)$/.exec(line);
      if (!m) return;
      clearTimeout(timer);
      resolve({ url: m[1]!, child, stderr: () => stderr, stdout: () => stdout, exited, stop });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`kmoe serve exited with ${code} before listening; stderr:\n${stderr}`));
    });
  });
}
