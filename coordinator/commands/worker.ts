// `kmoe worker`: host some experts of a model (all layers) and answer dispatches over WebSockets.
// Prints one ready line on stdout when it accepts connections; logs go to stderr; SIGTERM or
// SIGINT closes the connections and exits 0.

import { loadModelConfig } from '../../shared/model/config.js';
import { formatExpertSet, parseExpertSet } from '../../shared/protocol/expert-set.js';
import { formatReadyLine } from '../../shared/protocol/ready-line.js';
import { createProcessLogger } from '../../shared/runtime/logger.js';
import { stopWithParent } from '../../shared/runtime/stop-with-parent.js';
import { ExpertCompute } from '../../worker/expert-compute.js';
import { DEFAULT_MAX_FRAME_BYTES, WorkerServer } from '../../worker/server.js';
import { COMPUTE_OPTIONS, num, parse, required, sessionSettings, str } from './args.js';

const DEFAULT_WORKER_PORT = 7070;

export const usage = `kmoe worker --model DIR --experts SET [options]

Loads the weights of the experts in SET (every layer) and serves them to coordinators
(kmoe generate/eval --workers ws://HOST:PORT). Prints "kmoe worker ready ws://HOST:PORT experts SET"
on stdout once it accepts connections.

  --model DIR          checkpoint directory (the coordinator must use the same model)
  --experts SET        expert indices and ranges, e.g. 0-3 or 0,2,5-7
  --port P             port to listen on (default ${DEFAULT_WORKER_PORT}; 0 = any free port, shown in the ready line)
  --host ADDR          address to listen on (default 127.0.0.1; 0.0.0.0 for other hosts)
  --max-frame-mb N     largest request accepted, in MiB (default ${DEFAULT_MAX_FRAME_BYTES / 2 ** 20})
  --threads N          onnxruntime threads (default: all cores)
  --device cpu|cuda    execution provider (default cpu; cuda fails loudly if unavailable)
  --expert-weights F   fp32 (default) or int8: blockwise 8-bit expert weights, faster decode, approximate`;

export async function run(argv: readonly string[]): Promise<number> {
  const p = parse(argv, {
    model: { type: 'string' },
    experts: { type: 'string' },
    port: { type: 'string' },
    host: { type: 'string' },
    'max-frame-mb': { type: 'string' },
    ...COMPUTE_OPTIONS,
  });
  const modelDir = required(p, 'model');
  const expertArg = required(p, 'experts');
  const port = num(p, 'port', DEFAULT_WORKER_PORT, { integer: true, min: 0, max: 65535 });
  const host = str(p, 'host') ?? '127.0.0.1';
  const maxFrameBytes = Math.round(
    num(p, 'max-frame-mb', DEFAULT_MAX_FRAME_BYTES / 2 ** 20, { min: 0.001, max: 2048 }) * 2 ** 20,
  );
  const settings = sessionSettings(p);
  const config = await loadModelConfig(modelDir);
  const experts = parseExpertSet(expertArg, config.numExperts);

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
  log.info(`${reason}: closing`);
  await server.close();
  await compute.close();
  if (process.connected) process.disconnect();
  return 0;
}
