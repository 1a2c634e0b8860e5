// `kmoe serve`: the OpenAI-compatible HTTP server. Starts local expert workers (or connects to
// remote ones, or runs experts in-process), the engine and the continuous-batching scheduler,
// prints the URL, and shuts down gracefully on SIGTERM/SIGINT.

import { basename, resolve } from 'node:path';
import { UsageError } from '../../shared/errors/usage-error.js';
import { loadModelConfig } from '../../shared/model/config.js';
import { DEFAULT_WIRE_DTYPE, isWireDType, WIRE_DTYPES } from '../../shared/protocol/wire-dtype.js';
import { ClusterHealth } from '../cluster/cluster-health.js';
import { type LocalCluster, startLocalCluster } from '../cluster/local-cluster.js';
import { type Membership, StaticMembership } from '../cluster/membership.js';
import { DEFAULT_DISPATCH_TIMEOUT_MS } from '../cluster/remote-expert-backend.js';
import type { ExpertsOption } from '../engine/engine.js';
import { EngineClient } from '../engine/engine-client.js';
import { createLogger, LOG_LEVELS } from '../server/logger.js';
import { startServing } from '../server/serving.js';
import {
  COMPUTE_OPTIONS,
  checkRouting,
  num,
  type Parsed,
  parse,
  rejectExpertWeightsWithRemoteWorkers,
  required,
  sessionSettings,
  str,
} from './args.js';

export const usage = `kmoe serve --model DIR [options]

OpenAI-compatible API (POST /v1/completions, /v1/chat/completions; GET /v1/models, /health,
/ready, /metrics) with continuous batching. Prints "kmoe serve listening on http://HOST:PORT".

  --model DIR              checkpoint directory
  --host ADDR              listen address (default 127.0.0.1)
  --port N                 listen port; 0 picks a free one (default 8000)
  --workers N|URLS         N local worker processes with the experts split evenly (default 2),
                           0 = experts in this process, or comma-separated ws:// URLs of running
                           kmoe workers
  --wire DTYPE             hidden states on the wire to workers: ${WIRE_DTYPES.join(' | ')} (default ${DEFAULT_WIRE_DTYPE})
  --dispatch-timeout MS    per worker request (default ${DEFAULT_DISPATCH_TIMEOUT_MS})
  --routing SPEC|FILE      default routing policy (default: the model's native top-K)
  --profiles FILES         comma-separated routing profiles requests may name in kmoe.routing
  --max-running N          sequences decoding or prefilling at once (default 16)
  --max-queued N           accepted sequences waiting beyond those; then 429 (default 64)
  --prefill-chunk N        prompt tokens per prefill chunk (default 64)
  --served-model-name S    the model name clients send (default: the model directory's name)
  --shutdown-timeout S     seconds in-flight requests get to finish on SIGTERM (default 10)
  --log-level LEVEL        ${LOG_LEVELS.join(' | ')} (default info); JSON lines on stderr
  --threads N              onnxruntime threads of the coordinator (default: all cores)
  --device cpu|cuda        execution provider (default cpu)
  --expert-weights F       fp32 (default) or int8: how the experts compute, in the local workers
                           or in-process (remote workers take it on their own command line)`;

/** The largest body read: a prompt as long as any supported context fits easily. */
const BODY_LIMIT_BYTES = 8 * 1024 * 1024;

type WorkersArg =
  | { readonly kind: 'count'; readonly n: number }
  | { readonly kind: 'urls'; readonly urls: string[] };

export async function run(argv: readonly string[]): Promise<number> {
  const p = parse(argv, {
    model: { type: 'string' },
    host: { type: 'string' },
    port: { type: 'string' },
    workers: { type: 'string' },
    wire: { type: 'string' },
    'dispatch-timeout': { type: 'string' },
    routing: { type: 'string' },
    profiles: { type: 'string' },
    'max-running': { type: 'string' },
    'max-queued': { type: 'string' },
    'prefill-chunk': { type: 'string' },
    'served-model-name': { type: 'string' },
    'shutdown-timeout': { type: 'string' },
    'log-level': { type: 'string' },
    ...COMPUTE_OPTIONS,
  });
  const modelDir = required(p, 'model');
  // Listen for signals from the start: a SIGTERM during startup shuts down right after it
  // instead of killing the process with its worker processes orphaned.
  const stop = new Promise<NodeJS.Signals>((resolveSignal) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => resolveSignal(signal));
  });
  const host = str(p, 'host') ?? '127.0.0.1';
  const port = num(p, 'port', 8000, { integer: true, min: 0, max: 65535 });
  const maxRunning = num(p, 'max-running', 16, { integer: true, min: 1 });
  const maxQueued = num(p, 'max-queued', 64, { integer: true, min: 0 });
  const prefillChunk = num(p, 'prefill-chunk', 64, { integer: true, min: 1 });
  const graceMs = num(p, 'shutdown-timeout', 10, { min: 0 }) * 1000;
  const servedModelName = str(p, 'served-model-name') ?? basename(resolve(modelDir));
  const settings = sessionSettings(p);
  const log = createLogger(str(p, 'log-level') ?? 'info');
  const routingArg = str(p, 'routing');
  const profiles = (str(p, 'profiles') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  // Bad routing fails here, in milliseconds, before workers or the engine start.
  await checkRouting(modelDir, routingArg);
  for (const profile of profiles) await checkRouting(modelDir, profile);
  const config = await loadModelConfig(modelDir);
  const workers = workersArg(p, config.numExperts);
  if (workers.kind === 'urls') rejectExpertWeightsWithRemoteWorkers(p);
  if (workers.kind === 'count' && workers.n === 0) {
    for (const name of ['wire', 'dispatch-timeout']) {
      if (str(p, name) !== undefined) throw new UsageError(`--${name} has no effect with --workers 0`);
    }
  }
  const wire = str(p, 'wire') ?? DEFAULT_WIRE_DTYPE;
  if (!isWireDType(wire))
    throw new UsageError(`--wire must be one of ${WIRE_DTYPES.join(', ')}, got '${wire}'`);
  const timeoutMs = num(p, 'dispatch-timeout', DEFAULT_DISPATCH_TIMEOUT_MS, { integer: true, min: 1 });

  let cluster: LocalCluster | undefined;
  if (workers.kind === 'count' && workers.n > 0) {
    log.info({ workers: workers.n }, 'starting local expert workers');
    cluster = await startLocalCluster({
      modelDir,
      workers: workers.n,
      device: settings.device,
      expertWeights: settings.expertWeights,
      onLog: (worker, line) => log.info({ worker }, line),
      onExit: (w, code, signal) => {
        log.error(
          { worker: w.index, code, signal },
          'a local expert worker exited; experts are no longer covered',
        );
      },
    });
  }
  const membership: Membership =
    cluster?.membership ?? new StaticMembership(workers.kind === 'urls' ? workers.urls : []);
  const urls = [...membership.members()];
  const experts: ExpertsOption =
    urls.length === 0 ? { kind: 'local' } : { kind: 'remote', workers: urls, wireDtype: wire, timeoutMs };

  let engine: EngineClient | undefined;
  let health: ClusterHealth | undefined;
  try {
    engine = await EngineClient.start({
      modelDir,
      settings,
      experts,
      ...(routingArg === undefined ? {} : { defaultRouting: routingArg }),
    });
    const description = engine.info.experts;
    const client = engine;
    client.onWorkerDown((e) =>
      log.error({ worker: e.url, reason: e.reason }, 'lost the connection to a worker'),
    );
    health = ClusterHealth.watch({
      description,
      numExperts: engine.info.numExperts,
      placement: engine.info.placement,
      membership,
      connections: (listener) => client.onWorkerDown(listener),
      reportsExits: cluster !== undefined,
    });
    const cover = health;
    const serving = await startServing(
      engine,
      {
        modelDir,
        host,
        port,
        servedModelName,
        profiles,
        maxRunning,
        maxQueued,
        prefillChunk,
        bodyLimitBytes: BODY_LIMIT_BYTES,
        experts: () => cover.coverage(),
      },
      log,
    );
    log.info(
      { url: serving.url, model: servedModelName, experts: description, routing: engine.info.defaultRouting },
      'serving',
    );
    process.stdout.write(`kmoe serve listening on ${serving.url}\n`);
    const signal = await stop;
    log.info({ signal, graceMs }, 'shutting down: no new requests, draining in-flight ones');
    const report = await serving.shutdown(graceMs);
    log.info({ cancelled: report.cancelled }, 'drained');
  } finally {
    health?.close();
    await engine?.close();
    await cluster?.stop();
  }
  log.info('stopped');
  return 0;
}

function workersArg(p: Parsed, numExperts: number): WorkersArg {
  const value = (str(p, 'workers') ?? '2').trim();
  if (/^\d+$/.test(value)) {
    const n = Number(value);
    if (n > numExperts) throw new UsageError(`--workers ${n} exceeds the model's ${numExperts} experts`);
    return { kind: 'count', n };
  }
  const urls = value
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
  for (const url of urls) {
    if (!/^wss?:\/\/[^\s/]+/.test(url)) {
      throw new UsageError(`--workers takes a count or ws:// URLs; '${url}' is neither`);
    }
  }
  if (urls.length === 0) throw new UsageError('--workers takes a count or ws:// URLs');
  return { kind: 'urls', urls };
}
