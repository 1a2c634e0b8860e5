// `kmoe local-cluster`: N expert workers on this host, experts split evenly, in the foreground
// until SIGINT/SIGTERM. Prints the worker URLs to pass to --workers.

import { loadModelConfig } from '../../../shared/model/config.js';
import type { ComputePlacement } from '../../../shared/protocol/compute-placement.js';
import { formatExpertSet } from '../../../shared/protocol/expert-set.js';
import { createProcessLogger, relayLogLine } from '../../../shared/runtime/logger.js';
import { stopWithParent } from '../../../shared/runtime/stop-with-parent.js';
import { startLocalCluster } from '../../cluster/local-cluster.js';
import { type ComputeOptions, localClusterWorkers, type WorkersArg } from '../options.js';
import { UsageError } from '../usage-error.js';

export interface LocalClusterOptions extends ComputeOptions {
  readonly model: string;
  readonly workers: WorkersArg;
  readonly portBase?: number;
  readonly host?: string;
  /** The cluster token coordinators must prove (checked against --host and --insecure by the CLI). */
  readonly clusterToken?: string;
  readonly insecure?: boolean;
  readonly compute: ComputePlacement;
}

export async function run(o: LocalClusterOptions): Promise<number> {
  const modelDir = o.model;
  // Checked, with --port-base, before this module loaded.
  const n = localClusterWorkers(o);
  const config = await loadModelConfig(modelDir);
  if (n > config.numExperts)
    throw new UsageError(`--workers ${n} exceeds the model's ${config.numExperts} experts`);
  const { portBase, host } = o;
  const log = createProcessLogger('kmoe-local-cluster');

  let crashed: (why: string) => void = () => {};
  const crash = new Promise<string>((resolve) => {
    crashed = resolve;
  });
  const cluster = await startLocalCluster({
    modelDir,
    workers: n,
    ...(portBase === undefined ? {} : { portBase }),
    ...(host === undefined ? {} : { host }),
    ...(o.threads === undefined ? {} : { threads: o.threads }),
    ...(o.device === undefined ? {} : { device: o.device }),
    ...(o.expertWeights === undefined ? {} : { expertWeights: o.expertWeights }),
    compute: o.compute,
    auth:
      o.clusterToken === undefined
        ? { kind: 'none', insecure: o.insecure ?? false }
        : { kind: 'token', token: o.clusterToken },
    onLog: (worker, line) => relayLogLine(log, line, { worker }),
    onExit: (w, code, signal) => crashed(`worker ${w.index} (${w.url}) exited (${signal ?? `code ${code}`})`),
  });
  for (const w of cluster.workers) {
    process.stdout.write(
      `worker ${w.index} ${w.url} experts ${formatExpertSet(w.experts)} pid ${w.process.pid}\n`,
    );
  }
  process.stdout.write(`kmoe local-cluster ready ${cluster.urls.join(',')}\n`);

  const unwatch = stopWithParent();
  const ended = await Promise.race([
    crash.then((why) => ({ crash: why })),
    new Promise<{ signal: string }>((resolve) => {
      process.once('SIGTERM', () => resolve({ signal: 'SIGTERM' }));
      process.once('SIGINT', () => resolve({ signal: 'SIGINT' }));
    }),
  ]);
  unwatch();
  if ('crash' in ended) log.error(`${ended.crash}; stopping the others`);
  else log.info(`${ended.signal}: stopping the workers`);
  await cluster.stop();
  return 'crash' in ended ? 1 : 0;
}
