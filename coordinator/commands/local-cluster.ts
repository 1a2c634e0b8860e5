// `kmoe local-cluster`: N expert workers on this host, experts split evenly, in the foreground
// until SIGINT/SIGTERM. Prints the worker URLs to pass to --workers.

import { UsageError } from '../../shared/errors/usage-error.js';
import { loadModelConfig } from '../../shared/model/config.js';
import { formatExpertSet } from '../../shared/protocol/expert-set.js';
import { startLocalCluster } from '../cluster/local-cluster.js';
import { COMPUTE_OPTIONS, num, optionalNum, parse, required, sessionSettings, str } from './args.js';

export const usage = `kmoe local-cluster --model DIR --workers N [options]

Starts N kmoe worker processes on this host, experts split evenly in contiguous ranges, and prints
"kmoe local-cluster ready URL,URL,..." once all accept connections. Then, e.g.:
  kmoe eval --model DIR --ids data/eval/valid.code.u16 --workers URL,URL,...
Workers accept every wire dtype; the coordinator picks one with --wire.

  --model DIR          checkpoint directory
  --workers N          number of worker processes (1 .. number of experts)
  --port-base P        worker i listens on P + i (default: free ports)
  --host ADDR          address to listen on (default 127.0.0.1)
  --threads N          onnxruntime threads per worker (default: cores / N, at least 1)
  --device cpu|cuda    execution provider of the workers (default cpu)
  --expert-weights F   fp32 (default) or int8: blockwise 8-bit expert weights, faster decode, approximate`;

export async function run(argv: readonly string[]): Promise<number> {
  const p = parse(argv, {
    model: { type: 'string' },
    workers: { type: 'string' },
    'port-base': { type: 'string' },
    host: { type: 'string' },
    ...COMPUTE_OPTIONS,
  });
  const modelDir = required(p, 'model');
  if (str(p, 'workers') === undefined) throw new UsageError('--workers is required');
  const config = await loadModelConfig(modelDir);
  const n = num(p, 'workers', 1, { integer: true, min: 1, max: config.numExperts });
  const portBase = optionalNum(p, 'port-base', { integer: true });
  if (portBase !== undefined && (portBase < 1 || portBase + n - 1 > 65535))
    throw new UsageError(`--port-base ${portBase} leaves no room for ${n} ports below 65536`);
  const settings = sessionSettings(p);
  const host = str(p, 'host');

  let crashed: (why: string) => void = () => {};
  const crash = new Promise<string>((resolve) => {
    crashed = resolve;
  });
  const cluster = await startLocalCluster({
    modelDir,
    workers: n,
    ...(portBase === undefined ? {} : { portBase }),
    ...(host === undefined ? {} : { host }),
    ...(str(p, 'threads') === undefined ? {} : { threads: settings.threads }),
    device: settings.device,
    expertWeights: settings.expertWeights,
    onLog: (i, line) => process.stderr.write(`[worker ${i}] ${line}\n`),
    onExit: (w, code, signal) => crashed(`worker ${w.index} (${w.url}) exited (${signal ?? `code ${code}`})`),
  });
  for (const w of cluster.workers) {
    process.stdout.write(
      `worker ${w.index} ${w.url} experts ${formatExpertSet(w.experts)} pid ${w.process.pid}\n`,
    );
  }
  process.stdout.write(`kmoe local-cluster ready ${cluster.urls.join(',')}\n`);

  const ended = await Promise.race([
    crash.then((why) => ({ crash: why })),
    new Promise<{ signal: string }>((resolve) => {
      process.once('SIGTERM', () => resolve({ signal: 'SIGTERM' }));
      process.once('SIGINT', () => resolve({ signal: 'SIGINT' }));
    }),
  ]);
  if ('crash' in ended) process.stderr.write(`kmoe local-cluster: ${ended.crash}; stopping the others\n`);
  else process.stderr.write(`kmoe local-cluster: ${ended.signal}: stopping the workers\n`);
  await cluster.stop();
  return 'crash' in ended ? 1 : 0;
}
