// `kmoe bench workers`: starts one engine with its experts in process and one with them in N local
// workers (as `serve --workers N` does), and runs the comparison of coordinator/bench/bench-workers.ts.

import { DEFAULT_WIRE_DTYPE } from '../../../shared/protocol/wire-dtype.js';
import { runBenchWorkers } from '../../bench/bench-workers.js';
import { EngineClient } from '../../engine/engine-client.js';
import { checkPlacement, checkRouting, placeExperts, printWorkerLog, sessionSettings } from '../experts.js';
import { type BatchedDecodeBenchCli, benchWorkersCount, singleRouting } from '../options.js';
import { printSmallFrames } from '../worker-notices.js';

export async function run(o: BatchedDecodeBenchCli, argv: readonly string[]): Promise<number> {
  // Its --workers and --routing were checked before this module loaded.
  const workers = { kind: 'count', n: benchWorkersCount(o.workers) } as const;
  const routing = singleRouting(o.routing);
  if (routing !== undefined) await checkRouting(o.model, routing);
  await checkPlacement(o.model, workers, o);
  const settings = sessionSettings(o);
  const placed = await placeExperts(o.model, workers, o, settings, { onLog: printWorkerLog });
  let inProcess: EngineClient | undefined;
  let remote: EngineClient | undefined;
  try {
    inProcess = await EngineClient.start({ modelDir: o.model, settings, experts: { kind: 'local' } });
    remote = await EngineClient.start({ modelDir: o.model, settings, experts: placed.experts });
    printSmallFrames(remote, 'bench workers');
    return await runBenchWorkers({
      inProcess,
      remote,
      workerUrls: placed.cluster?.urls ?? [],
      routing: routing ?? `topk:${inProcess.info.nativeK}`,
      streams: o.streams,
      tokens: o.tokens,
      repeats: o.repeats,
      ids: o.ids[0]!,
      settings: { ...settings, wire: o.wire ?? DEFAULT_WIRE_DTYPE, workers: workers.n },
      out: o.out,
      command: `kmoe bench workers ${argv.join(' ')}`.trim(),
    });
  } finally {
    await remote?.close();
    await inProcess?.close();
    await placed.cluster?.stop();
  }
}
