// Starts a real `kmoe worker` process on a free loopback port (the compiled CLI: build-dist.ts) and waits
// for its ready line; the handle stops it and keeps its stderr for assertions.

import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { parseReadyLine, type WorkerAuthMode } from '../../shared/protocol/ready-line.js';
import { KMOE_ARGV, MODEL_DIR, ROOT } from './paths.js';

export interface WorkerProcess {
  readonly url: string;
  readonly experts: readonly number[];
  /** How the ready line says coordinators are authenticated. */
  readonly auth: WorkerAuthMode | undefined;
  readonly child: ChildProcess;
  /** Everything the worker wrote to stderr so far. */
  stderr(): string;
  /** Every line the worker wrote to stdout so far (the ready line). */
  stdout(): string;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

export function startWorker(
  experts: string,
  extra: readonly string[] = [],
  opts: { modelDir?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<WorkerProcess> {
  const args = [
    'worker',
    '--model',
    opts.modelDir ?? MODEL_DIR,
    '--experts',
    experts,
    // Defaults where `extra` has none: kmoe refuses a flag given twice.
    ...(extra.includes('--port') ? [] : ['--port', '0']),
    ...(extra.includes('--threads') ? [] : ['--threads', '1']),
    ...extra,
  ];
  const child = spawn(process.execPath, [...KMOE_ARGV, ...args], {
    cwd: ROOT,
    ...(opts.env === undefined ? {} : { env: opts.env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  let stdout = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise<WorkerProcess>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`worker ${experts} printed no ready line; stderr:\n${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker ${experts} exited with ${code} before it was ready; stderr:\n${stderr}`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      stdout += `${line}\n`;
      const ready = parseReadyLine(line);
      if (!ready) return;
      clearTimeout(timer);
      resolve({
        url: ready.url,
        experts: ready.experts,
        auth: ready.auth,
        child,
        stderr: () => stderr,
        stdout: () => stdout,
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          return exited;
        },
      });
    });
  });
}
