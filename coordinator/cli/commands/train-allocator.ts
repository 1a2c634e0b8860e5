// `kmoe train-allocator`: fit the learned K allocator on calibration text (first halves by default)
// and write it as a routing profile; see coordinator/calibration/allocator-training.ts.

import { loadRoutingProfile, profileNameOf, saveRoutingProfile } from '../../../shared/routing/profile.js';
import { counted } from '../../../shared/text/counted.js';
import { PhaseBars } from '../../bench/report/progress.js';
import { trainAllocator } from '../../calibration/allocator-training.js';
import { loadCorpus } from '../../calibration/corpus.js';
import { signedPercent } from '../../calibration/format.js';
import { EngineClient } from '../../engine/engine-client.js';
import { STANDARD_WINDOW } from '../../evaluation/windows.js';
import { sessionSettings } from '../experts.js';
import type { ComputeOptions } from '../options.js';
import { UsageError } from '../usage-error.js';

export interface TrainAllocatorOptions extends ComputeOptions {
  readonly model: string;
  readonly out: string;
  readonly ids: string[];
  readonly windows: string;
  readonly trainWindows: number;
  readonly searchWindows: number;
  readonly holdoutWindows: number;
  readonly searchBudget: number;
  readonly budget: number;
  readonly step: number;
  readonly kZero: 'on' | 'off';
  readonly replaySearch?: string;
}

/** The recorded search path of an allocator profile, for --replay-search. */
function recordedSearch(file: string) {
  const prov = loadRoutingProfile(file).provenance;
  const search = prov?.['search'] as
    | { nativePpl: number; path: { rates: number[]; ppl: number; avgK: number }[] }
    | undefined;
  if (prov?.method !== 'allocator' || !search || search.path.length === 0)
    throw new UsageError(`--replay-search ${file}: not an allocator profile with a recorded search path`);
  const path = search.path.map((p) => ({ rates: p.rates, perplexity: p.ppl, avgK: p.avgK }));
  return { base: path[0]!, path, evaluations: 0 };
}

/** Ridge penalty per token: small, only keeps rare experts' one-hot weights bounded. */
const RIDGE = 1e-3;

export async function run(o: TrainAllocatorOptions, argv: readonly string[]): Promise<number> {
  const replay = o.replaySearch === undefined ? undefined : recordedSearch(o.replaySearch);
  const corpus = await loadCorpus(o.ids, o.windows, STANDARD_WINDOW);
  const engine = await EngineClient.start({ modelDir: o.model, settings: sessionSettings(o) });
  try {
    const bars = new PhaseBars((phase) =>
      phase === 'means' || phase === 'costs' ? 'windows' : 'evaluations',
    );
    const profile = await trainAllocator(engine, {
      corpus,
      trainWindows: o.trainWindows,
      searchWindows: o.searchWindows,
      holdoutWindows: o.holdoutWindows,
      searchBudget: o.searchBudget / 100,
      target: o.budget / 100,
      step: o.step,
      ridge: RIDGE,
      allowZero: o.kZero === 'on',
      ...(replay ? { replay } : {}),
      name: profileNameOf(o.out),
      command: `kmoe train-allocator ${argv.join(' ')}`,
      onPhase: (phase, done, total, note) => bars.update(phase, done, total, note),
    });
    bars.finish();
    saveRoutingProfile(o.out, profile);
    const prov = profile.provenance!;
    process.stdout.write(
      `${o.out}: allocator trained on ${counted(prov['trainTokens'] as number, 'token')} in ${(prov['trainSeconds'] as number).toFixed(1)} s; ` +
        `held-out calibration fold: avg K ${prov.avgK!.toFixed(3)} (saving ${((1 - prov.avgK! / 2) * 100).toFixed(1)}% vs native), ` +
        `perplexity ${signedPercent(prov['pplIncrease'] as number)}\n`,
    );
  } finally {
    await engine.close();
  }
  return 0;
}
