// `kmoe serve`: the OpenAI-compatible HTTP server. Starts local expert workers (or connects to
// remote ones, or runs experts in-process), the engine and the continuous-batching scheduler,
// prints the URL, and shuts down gracefully on SIGTERM/SIGINT.

import { basename, resolve } from 'node:path';
import { relayLogLine } from '../../../shared/runtime/logger.js';
import { checkCanListen } from '../../../shared/runtime/port.js';
import { stopWithParent } from '../../../shared/runtime/stop-with-parent.js';
import { ClusterHealth } from '../../cluster/cluster-health.js';
import { type Membership, StaticMembership } from '../../cluster/membership.js';
import { EngineClient } from '../../engine/engine-client.js';
import { createLogger, type LogLevel } from '../../server/logger.js';
import { startServing } from '../../server/serving.js';
import { checkPlacement, checkRouting, placeExperts, sessionSettings } from '../experts.js';
import { type ComputeOptions, type ExpertPlacementOptions, singleRouting } from '../options.js';

export interface ServeOptions extends ComputeOptions, ExpertPlacementOptions {
  readonly model: string;
  readonly host: string;
  readonly port: number;
  readonly routing?: string[];
  readonly profiles?: string[];
  readonly maxRunning: number;
  readonly maxQueued: number;
  readonly prefillChunk: number;
  readonly servedModelName?: string;
  readonly shutdownTimeout: number;
  /** Open HTTP connections at once; Node closes any beyond. */
  readonly maxConnections: number;
  readonly logLevel: LogLevel;
  /** --api-key / --api-key-file: required on /v1/* as `Authorization: Bearer KEY`. */
  readonly apiKey?: string;
}

/** The largest body read: a prompt as long as any supported context fits easily. */
const BODY_LIMIT_BYTES = 8 * 1024 * 1024;

/** Local worker processes when --workers is not given. */
export const DEFAULT_SERVE_WORKERS = 2;

export async function run(o: ServeOptions): Promise<number> {
  const modelDir = o.model;
  // Listen for signals from the start: a SIGTERM during startup shuts down right after it
  // instead of killing the process with its worker processes orphaned.
  const stop = new Promise<NodeJS.Signals>((resolveSignal) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => resolveSignal(signal));
  });
  stopWithParent();
  const { host, port, maxRunning, maxQueued, prefillChunk } = o;
  const graceMs = o.shutdownTimeout * 1000;
  const servedModelName = o.servedModelName ?? basename(resolve(modelDir));
  const settings = sessionSettings(o);
  const log = createLogger(o.logLevel);
  const routingArg = singleRouting(o.routing);
  const profiles = o.profiles ?? [];
  // Bad routing, placement or a taken port fail here, in milliseconds, before workers or the
  // engine start.
  await checkRouting(modelDir, routingArg);
  for (const profile of profiles) await checkRouting(modelDir, profile);
  const workers = o.workers ?? { kind: 'count', n: DEFAULT_SERVE_WORKERS };
  await checkPlacement(modelDir, workers, o);
  await checkCanListen(host, port);

  if (workers.kind === 'count' && workers.n > 0)
    log.info({ workers: workers.n }, 'starting local expert workers');
  const placed = await placeExperts(modelDir, workers, o, settings, {
    onLog: (worker, line) => relayLogLine(log, line, { worker }),
    onExit: (w, code, signal) => {
      log.error(
        { worker: w.index, code, signal },
        'a local expert worker exited; experts are no longer covered',
      );
    },
  });
  const { cluster, experts } = placed;
  const membership: Membership =
    cluster?.membership ?? new StaticMembership(workers.kind === 'urls' ? workers.urls : []);

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
        maxConnections: o.maxConnections,
        experts: () => cover.coverage(),
        ...(o.apiKey === undefined ? {} : { apiKey: o.apiKey }),
      },
      log,
    );
    log.info(
      {
        url: serving.url,
        model: servedModelName,
        experts: description,
        routing: engine.info.defaultRouting,
        apiKey: o.apiKey === undefined ? 'none: /v1 is open to anyone who can reach it' : 'required on /v1',
        workerAuth:
          experts.kind === 'local'
            ? 'no workers'
            : experts.clusterToken === undefined
              ? 'none (loopback workers only)'
              : 'cluster token',
      },
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
