// Starts kmoe worker processes on this host with the model's experts split between them, waits
// for their ready lines and stops them again: the embedded cluster of `kmoe local-cluster`,
// `kmoe bench dispatch`, the tests and `kmoe serve`. The cluster token reaches the workers through
// their environment (KMOE_CLUSTER_TOKEN), never their command line, which any local user can read.

import { type ChildProcess, spawn } from 'node:child_process';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { REDIS_URL_ENV } from '../../shared/cluster-registry/redis-url.js';
import { loadModelConfig } from '../../shared/model/config.js';
import type { ExpertWeightFormat } from '../../shared/onnx/expert-weight-format.js';
import type { Device } from '../../shared/onnx/session.js';
import { CLUSTER_TOKEN_ENV, randomClusterToken } from '../../shared/protocol/auth.js';
import type { ComputePlacement } from '../../shared/protocol/compute-placement.js';
import { formatExpertSet, splitExperts } from '../../shared/protocol/expert-set.js';
import { parseReadyLine } from '../../shared/protocol/ready-line.js';
import { cliArgv } from '../../shared/runtime/entry-points.js';
import { WorkerStartError } from './errors.js';
import { type Membership, StaticMembership } from './membership.js';

export interface LocalClusterOptions {
  readonly modelDir: string;
  /** Number of workers, experts split evenly in contiguous ranges; ignored when expertSets is given. */
  readonly workers?: number;
  /** Explicit expert sets, one per worker (uneven splits, replicas). */
  readonly expertSets?: readonly (readonly number[])[];
  readonly host?: string;
  /** Worker i listens on portBase + i; default 0 = free ports chosen by the OS. */
  readonly portBase?: number;
  /** Where each worker's experts compute (its --compute); default: thread. */
  readonly compute?: ComputePlacement;
  /**
   * The workers' --sched; default auto: SCHED_BATCH where it can be set (these workers share the
   * coordinator's host), else normal, each worker logging why.
   */
  readonly sched?: 'normal' | 'batch' | 'auto';
  /** onnxruntime threads per worker; default: the cores divided between the workers. */
  readonly threads?: number;
  readonly device?: Device;
  readonly expertWeights?: ExpertWeightFormat;
  readonly maxFrameMb?: number;
  readonly readyTimeoutMs?: number;
  /** How coordinators authenticate to the workers; default none (loopback --host only). */
  readonly auth?: LocalClusterAuth;
  /** Each stderr line of worker i. */
  readonly onLog?: (worker: number, line: string) => void;
  /** A worker ended while the cluster was running (not through stop()); `membership` reports it too. */
  readonly onExit?: (worker: LocalWorker, code: number | null, signal: NodeJS.Signals | null) => void;
}

/**
 * generate: a random token only this process learns (the embedded cluster of a command); token:
 * the cluster's token, for other coordinators too; none: no token, which the workers accept on a
 * loopback host only, or anywhere with `insecure` (they warn).
 */
export type LocalClusterAuth =
  | { readonly kind: 'generate' }
  | { readonly kind: 'token'; readonly token: string }
  | { readonly kind: 'none'; readonly insecure?: boolean };

export interface LocalWorker {
  readonly index: number;
  readonly url: string;
  readonly experts: readonly number[];
  readonly process: ChildProcess;
}

export interface LocalCluster {
  readonly urls: readonly string[];
  readonly workers: readonly LocalWorker[];
  /** The workers as cluster members: a worker that exits (not through stop()) leaves. */
  readonly membership: Membership;
  /** The token coordinators must prove to these workers (the generated one included); none: no auth. */
  readonly clusterToken: string | undefined;
  /** SIGTERM to every worker, SIGKILL after a grace period; resolves when all have exited. */
  stop(): Promise<void>;
}

const DEFAULT_READY_TIMEOUT_MS = 120_000;
const STOP_GRACE_MS = 5_000;
const STDERR_TAIL = 20;

export async function startLocalCluster(opts: LocalClusterOptions): Promise<LocalCluster> {
  const config = await loadModelConfig(opts.modelDir);
  const sets = opts.expertSets ?? splitExperts(config.numExperts, opts.workers ?? 1);
  const threads = opts.threads ?? Math.max(1, Math.floor(os.availableParallelism() / sets.length));
  const auth = opts.auth ?? { kind: 'none' };
  const clusterToken =
    auth.kind === 'generate' ? randomClusterToken() : auth.kind === 'token' ? auth.token : undefined;
  // Workers must not pick up a token of this process's environment that the cluster does not use,
  // nor a registry: they serve the coordinators given their URLs, never ones found in Redis.
  const { [CLUSTER_TOKEN_ENV]: _inherited, [REDIS_URL_ENV]: _registry, ...env } = process.env;
  if (clusterToken !== undefined) env[CLUSTER_TOKEN_ENV] = clusterToken;
  const children: ChildProcess[] = [];
  let stopping = false;
  let membership: StaticMembership | undefined;
  // Workers must not outlive this process, whatever way it ends (a test runner exiting included).
  const killAll = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  process.once('exit', killAll);

  const stop = async (): Promise<void> => {
    stopping = true;
    await Promise.all(children.map((c) => stopChild(c)));
    process.off('exit', killAll);
  };

  const sched = opts.sched ?? 'auto';
  const starts = sets.map((experts, index) => {
    const args = [
      ...cliArgv(),
      'worker',
      '--model',
      opts.modelDir,
      '--experts',
      formatExpertSet(experts),
      '--port',
      String(opts.portBase === undefined || opts.portBase === 0 ? 0 : opts.portBase + index),
      '--host',
      opts.host ?? '127.0.0.1',
      '--threads',
      String(threads),
      '--device',
      opts.device ?? 'cpu',
      '--expert-weights',
      opts.expertWeights ?? 'fp32',
      '--compute',
      opts.compute ?? 'thread',
      '--sched',
      sched,
      ...(opts.maxFrameMb === undefined ? [] : ['--max-frame-mb', String(opts.maxFrameMb)]),
      ...(auth.kind === 'none' && auth.insecure ? ['--insecure'] : []),
    ];
    // The IPC channel is the worker's lifeline: it exits when this process goes away. Its own
    // process group (detached): a Ctrl-C at the terminal signals this process, which drains its
    // requests and then stops the workers, instead of every worker closing at once mid-request.
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env,
      detached: true,
    });
    children.push(child);
    return waitReady(
      child,
      index,
      experts,
      {
        ...opts,
        onExit: (w, code, signal) => {
          membership?.leave({
            url: w.url,
            reason: `worker ${w.index} (${w.url}) exited (${signal ?? `code ${code}`})`,
          });
          opts.onExit?.(w, code, signal);
        },
      },
      () => stopping,
    );
  });
  const results = await Promise.allSettled(starts);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    await stop();
    throw (failed as PromiseRejectedResult).reason;
  }
  const workers = results.map((r) => (r as PromiseFulfilledResult<LocalWorker>).value);
  membership = new StaticMembership(workers.map((w) => w.url));
  return { urls: membership.members(), workers, membership, clusterToken, stop };
}

function waitReady(
  child: ChildProcess,
  index: number,
  experts: readonly number[],
  opts: LocalClusterOptions,
  stopping: () => boolean,
): Promise<LocalWorker> {
  const what = `worker ${index} (experts ${formatExpertSet(experts)})`;
  const tail: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => {
    tail.push(line);
    if (tail.length > STDERR_TAIL) tail.shift();
    opts.onLog?.(index, line);
  });
  return new Promise<LocalWorker>((resolve, reject) => {
    let ready: LocalWorker | undefined;
    const timeoutMs = opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    const timer = setTimeout(
      () => reject(new WorkerStartError(`${what} printed no ready line within ${timeoutMs} ms`, tail)),
      timeoutMs,
    );
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const r = parseReadyLine(line);
      if (!r || ready) return;
      clearTimeout(timer);
      ready = { index, url: r.url, experts: r.experts, process: child };
      resolve(ready);
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new WorkerStartError(`${what} could not be started: ${err.message}`, tail));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (!ready) {
        // Let the last stderr lines arrive before quoting them.
        setImmediate(() =>
          reject(
            new WorkerStartError(`${what} exited (${signal ?? `code ${code}`}) before it was ready`, tail),
          ),
        );
      } else if (!stopping()) opts.onExit?.(ready, code, signal);
    });
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
