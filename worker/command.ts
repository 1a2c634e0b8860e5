// `kmoe worker`: host some experts of a model (all layers) and answer dispatches over WebSockets.
// Prints one ready line on stdout when it accepts connections; logs go to stderr; SIGTERM or
// SIGINT closes the connections and exits 0. The CLI parses the command line; this module takes
// typed options and imports nothing from the coordinator.

import { loadModelConfig } from '../shared/model/config.js';
import type { SessionSettings } from '../shared/onnx/session.js';
import { formatExpertSet, parseExpertSet } from '../shared/protocol/expert-set.js';
import { formatReadyLine } from '../shared/protocol/ready-line.js';
import { createProcessLogger } from '../shared/runtime/logger.js';
import { checkCanListen } from '../shared/runtime/port.js';
import { stopWithParent } from '../shared/runtime/stop-with-parent.js';
import { ExpertCompute } from './expert-compute.js';
import { DEFAULT_MAX_FRAME_BYTES, WorkerServer } from './server.js';

export const DEFAULT_WORKER_PORT = 7070;
/** SIGTERM/SIGINT: how long in-flight requests may take to finish before the worker closes anyway. */
export const DRAIN_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_FRAME_MB = DEFAULT_MAX_FRAME_BYTES / 2 ** 20;

export interface WorkerCommandOptions {
  readonly model: string;
  /** Expert indices and ranges, e.g. `0-3` or `0,2,5-7`. */
  readonly experts: string;
  readonly host: string;
  readonly port: number;
  readonly maxFrameMb: number;
  readonly settings: SessionSettings;
}

export async function run(o: WorkerCommandOptions): Promise<number> {
  const { model: modelDir, host, port, settings } = o;
  const maxFrameBytes = Math.round(o.maxFrameMb * 2 ** 20);
  const config = await loadModelConfig(modelDir);
  const experts = parseExpertSet(o.experts, config.numExperts);
  // A taken port fails now, not after the experts are loaded.
  await checkCanListen(host, port);

  const log = createProcessLogger('kmoe-worker');
  const started = performance.now();
  log.info(
    `loading experts ${formatExpertSet(experts)} of ${config.numExperts} (${config.numLayers} layers, ${settings.expertWeights} weights) from ${modelDir}`,
  );
  const compute = await ExpertCompute.start({ modelDir, experts, settings });
  let server: WorkerServer;
  try {
    server = await WorkerServer.start({ host, port, maxFrameBytes, compute, log });
  } catch (err) {
    await compute.close();
    throw err;
  }
  const mb = (compute.model.bytesRead / 2 ** 20).toFixed(1);
  log.info(
    `loaded in ${((performance.now() - started) / 1000).toFixed(1)} s (${mb} MiB of the checkpoint read)`,
  );
  process.stdout.write(`${formatReadyLine({ url: server.url, experts: compute.model.experts })}\n`);

  const unwatch = stopWithParent();
  const reason = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
    // Started by local-cluster or serve: the IPC channel closes when that parent dies, however it
    // died (even SIGKILL), so an orphaned worker does not keep its port and memory.
    process.once('disconnect', () => resolve('parent process exited'));
  });
  unwatch();
  if (reason === 'SIGTERM' || reason === 'SIGINT') {
    // Coordinators stop sending on the notice; what they sent is answered before closing.
    log.info(`${reason}: draining (coordinators told to send no new work)`);
    const drained = await server.drain(reason, DRAIN_TIMEOUT_MS);
    if (!drained) log.warn(`requests still running after ${DRAIN_TIMEOUT_MS} ms: closing anyway`);
  }
  log.info(`${reason}: closing`);
  await server.close();
  await compute.close();
  if (process.connected) process.disconnect();
  return 0;
}
