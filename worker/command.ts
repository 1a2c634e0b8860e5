// `kmoe worker`: host some experts of a model (all layers) and answer dispatches over WebSockets.
// Prints one ready line on stdout when it accepts connections; logs go to stderr; SIGTERM or
// SIGINT closes the connections and exits 0. The CLI parses the command line; this module takes
// typed options and imports nothing from the coordinator.

import { loadModelConfig } from '../shared/model/config.js';
import type { SessionSettings } from '../shared/onnx/session.js';
import { ClusterSecret } from '../shared/protocol/auth.js';
import { formatExpertSet, parseExpertSet } from '../shared/protocol/expert-set.js';
import { formatReadyLine, type WorkerAuthMode } from '../shared/protocol/ready-line.js';
import { createProcessLogger } from '../shared/runtime/logger.js';
import { checkCanListen, isLoopbackHost } from '../shared/runtime/port.js';
import { stopWithParent } from '../shared/runtime/stop-with-parent.js';
import { ExpertCompute } from './expert-compute.js';
import { DEFAULT_MAX_FRAME_BYTES, WorkerServer } from './server.js';

export const DEFAULT_WORKER_PORT = 7070;
export const DEFAULT_MAX_FRAME_MB = DEFAULT_MAX_FRAME_BYTES / 2 ** 20;

export interface WorkerCommandOptions {
  readonly model: string;
  /** Expert indices and ranges, e.g. `0-3` or `0,2,5-7`. */
  readonly experts: string;
  readonly host: string;
  readonly port: number;
  readonly maxFrameMb: number;
  /** WebSocket connections at once (handshaking or greeted); beyond, HTTP 503. */
  readonly maxConnections: number;
  readonly settings: SessionSettings;
  /**
   * Every coordinator must prove it holds this token. Without one the CLI allows a loopback --host
   * only, unless --insecure (then this warns).
   */
  readonly clusterToken?: string;
}

export async function run(o: WorkerCommandOptions): Promise<number> {
  const { model: modelDir, host, port, settings } = o;
  const maxFrameBytes = Math.round(o.maxFrameMb * 2 ** 20);
  const config = await loadModelConfig(modelDir);
  const experts = parseExpertSet(o.experts, config.numExperts);
  // A taken port fails now, not after the experts are loaded.
  await checkCanListen(host, port);

  const log = createProcessLogger('kmoe-worker');
  const secret = o.clusterToken === undefined ? undefined : new ClusterSecret(o.clusterToken);
  const auth: WorkerAuthMode = secret ? 'token' : isLoopbackHost(host) ? 'loopback-only' : 'insecure';
  if (auth === 'token') log.info('coordinators must prove the cluster token');
  else if (auth === 'loopback-only')
    log.info(
      `no cluster token: listening on loopback (${host}) only, for coordinators on this machine; set KMOE_CLUSTER_TOKEN or --cluster-token-file to accept other hosts`,
    );
  else
    log.warn(
      `INSECURE: no cluster token and listening on ${host} (--insecure): anyone who can reach this port can submit work; set KMOE_CLUSTER_TOKEN or --cluster-token-file`,
    );
  const started = performance.now();
  log.info(
    `loading experts ${formatExpertSet(experts)} of ${config.numExperts} (${config.numLayers} layers, ${settings.expertWeights} weights) from ${modelDir}`,
  );
  const compute = await ExpertCompute.start({ modelDir, experts, settings });
  let server: WorkerServer;
  try {
    server = await WorkerServer.start({
      host,
      port,
      maxFrameBytes,
      maxConnections: o.maxConnections,
      compute,
      log,
      ...(secret === undefined ? {} : { secret }),
    });
  } catch (err) {
    await compute.close();
    throw err;
  }
  const mb = (compute.model.bytesRead / 2 ** 20).toFixed(1);
  log.info(
    `loaded in ${((performance.now() - started) / 1000).toFixed(1)} s (${mb} MiB of the checkpoint read)`,
  );

  const unwatch = stopWithParent();
  // Handlers first, then the ready line: whoever reads the line may send SIGTERM at once, and
  // before a handler exists that would kill the process instead of closing it.
  const stop = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
    // Started by local-cluster or serve: the IPC channel closes when that parent dies, however it
    // died (even SIGKILL), so an orphaned worker does not keep its port and memory.
    process.once('disconnect', () => resolve('parent process exited'));
  });
  process.stdout.write(`${formatReadyLine({ url: server.url, experts: compute.model.experts, auth })}\n`);
  const reason = await stop;
  unwatch();
  log.info(`${reason}: closing`);
  await server.close();
  await compute.close();
  if (process.connected) process.disconnect();
  return 0;
}
