// `kmoe bench adaptive-k-time`: places the experts (in process or --workers), starts the engine and
// runs the wall-time comparison of coordinator/bench/bench-adaptive-k-time.ts.

import { runBenchAdaptiveKTime } from '../../bench/bench-adaptive-k-time.js';
import { EngineClient } from '../../engine/engine-client.js';
import { checkPlacement, checkRouting, placeExperts, printWorkerLog, sessionSettings } from '../experts.js';
import { type BatchedDecodeBenchCli, candidateRouting, IN_PROCESS, type WorkersArg } from '../options.js';
import { printSmallFrames } from '../worker-notices.js';

export async function run(o: BatchedDecodeBenchCli, argv: readonly string[]): Promise<number> {
  // Checked before this module loaded.
  const routing = candidateRouting(o.routing);
  await checkRouting(o.model, routing);
  const workers: WorkersArg = o.workers ?? IN_PROCESS;
  await checkPlacement(o.model, workers, o);
  const settings = sessionSettings(o);
  const placed = await placeExperts(o.model, workers, o, settings, { onLog: printWorkerLog });
  let engine: EngineClient | undefined;
  try {
    engine = await EngineClient.start({ modelDir: o.model, settings, experts: placed.experts });
    printSmallFrames(engine, 'bench adaptive-k-time');
    return await runBenchAdaptiveKTime({
      engine,
      routing,
      streams: o.streams,
      tokens: o.tokens,
      repeats: o.repeats,
      ids: o.ids[0]!,
      localExperts: placed.experts.kind === 'local',
      expertsDescription: engine.info.experts,
      out: o.out,
      command: `kmoe bench adaptive-k-time ${argv.join(' ')}`.trim(),
    });
  } finally {
    await engine?.close();
    await placed.cluster?.stop();
  }
}
