// `kmoe calibrate`: write a routing profile from router statistics of calibration text, by theory
// (entropy thresholds alpha * ln N), percentile (per-layer thresholds hitting a target average K) or
// quality (fewest experts within a perplexity budget, measured with real reduced-K forward passes).

import { loadModelConfig } from '../../../shared/model/config.js';
import {
  profileNameOf,
  profileVersionFor,
  type RoutingProfile,
  saveRoutingProfile,
} from '../../../shared/routing/profile.js';
import type { PolicyConfig } from '../../../shared/routing/registry.js';
import { PhaseBars } from '../../bench/report/progress.js';
import { calibrate } from '../../calibration/calibrate.js';
import { loadCorpus } from '../../calibration/corpus.js';
import { signedPercent } from '../../calibration/format.js';
import { profileModel } from '../../calibration/quality-search.js';
import type { CalibratedPolicy } from '../../calibration/skip-rates.js';
import { EngineClient } from '../../engine/engine-client.js';
import { STANDARD_WINDOW } from '../../evaluation/windows.js';
import { routingModelOfConfig } from '../../moe/routing-model.js';
import { sessionSettings } from '../experts.js';
import type { ComputeOptions } from '../options.js';
import { UsageError } from '../usage-error.js';

export const DEFAULT_CALIBRATION_IDS = ['data/eval/valid.docs.u16', 'data/eval/valid.code.u16'];

const DEFAULT_SUBSTITUTE_WINDOWS = 256;
/** Measured: 1e-4 .. 0.1 change the held-out error of a rank-32 fit by at most 0.02 (docs/adaptive-k.md). */
const DEFAULT_SUBSTITUTE_RIDGE = 0.01;

export type CalibrationMethodName = 'theory' | 'percentile' | 'quality';

export interface CalibrateOptions extends ComputeOptions {
  readonly model: string;
  readonly method: CalibrationMethodName;
  readonly policy: CalibratedPolicy;
  readonly out: string;
  readonly ids: string[];
  readonly windows: string;
  readonly alpha: number[];
  readonly kValues: number[];
  readonly targetAvgK?: number;
  readonly budget: number;
  readonly searchWindows: number;
  readonly step: number;
  readonly expertMeans: 'on' | 'off';
  readonly substituteRank: number;
  readonly substituteWindows?: number;
  readonly substituteRidge?: number;
}

/** `argv`: the command line as given, recorded in the profile's provenance. */
export async function run(o: CalibrateOptions, argv: readonly string[]): Promise<number> {
  const { model: modelDir, method, policy, out } = o;
  // The flags that cannot go together were checked before this module loaded (checkCalibrateFlags).
  if (method === 'theory') return theory(o);
  const corpus = await loadCorpus(o.ids, o.windows, STANDARD_WINDOW);
  const targetAvgK = method === 'percentile' ? o.targetAvgK : undefined;
  const budget = o.budget / 100;
  const { searchWindows, step } = o;
  const substituteWindows = o.substituteWindows ?? DEFAULT_SUBSTITUTE_WINDOWS;
  if (o.substituteRank > 0) {
    // The fit takes windows outside the searched ones; what is left must be verifiable.
    const searched = method === 'quality' ? Math.min(searchWindows, corpus.windows) : 0;
    if (substituteWindows >= corpus.windows - searched) {
      throw new UsageError(
        `--substitute-windows ${substituteWindows}: only ${corpus.windows - searched} of the ${corpus.windows} calibration windows ` +
          (searched > 0 ? `are outside the ${searched} --search-windows; ` : 'there; ') +
          'the fit needs fewer than that (use fewer --substitute-windows' +
          (searched > 0 ? ' or --search-windows' : '') +
          ', or more calibration windows)',
      );
    }
  }

  if (targetAvgK !== undefined) {
    const { nativeK } = routingModelOfConfig(await loadModelConfig(modelDir));
    if (targetAvgK > nativeK)
      throw new UsageError(`--target-avg-k ${targetAvgK} is above the model's native K of ${nativeK}`);
  }
  const modelConfig = await loadModelConfig(modelDir);
  if (o.substituteRank > modelConfig.hiddenSize) {
    throw new UsageError(
      `--substitute-rank ${o.substituteRank} exceeds the model's hidden size ${modelConfig.hiddenSize}`,
    );
  }
  const engine = await EngineClient.start({ modelDir, settings: sessionSettings(o) });
  try {
    const name = profileNameOf(out);
    const bars = new PhaseBars((phase) =>
      phase === 'signals' || phase === 'substitutes' ? 'windows' : 'evaluations',
    );
    const profile = await calibrate(engine, {
      policy,
      method:
        method === 'percentile'
          ? { kind: 'percentile', targetAvgK: targetAvgK! }
          : { kind: 'quality', budget, searchWindows, step },
      corpus,
      expertMeans: o.expertMeans === 'on',
      ...(o.substituteRank > 0
        ? {
            substitutes: {
              rank: o.substituteRank,
              ridge: o.substituteRidge ?? DEFAULT_SUBSTITUTE_RIDGE,
              windows: substituteWindows,
            },
          }
        : {}),
      name,
      command: `kmoe calibrate ${argv.join(' ')}`,
      onPhase: (phase, done, total, note) => bars.update(phase, done, total, note),
    });
    bars.finish();
    saveRoutingProfile(out, profile);
    const prov = profile.provenance!;
    const verified = prov['verifiedWindows'] as number;
    process.stdout.write(
      `${out}: ${policy} (${method}) on ${corpus.windows} calibration windows${verified === corpus.windows ? '' : ` (${corpus.windows - verified} fitting the substitutes, verified on ${verified})`}: avg K ${prov.avgK!.toFixed(3)} ` +
        `(saving ${((1 - prov.avgK! / engine.info.nativeK) * 100).toFixed(1)}% vs native), perplexity ` +
        `${prov.ppl!.toFixed(4)} vs native ${(prov['nativePpl'] as number).toFixed(4)} ` +
        `(${signedPercent(prov['pplIncrease'] as number)})\n`,
    );
  } finally {
    await engine.close();
  }
  return 0;
}

async function theory(o: CalibrateOptions): Promise<number> {
  const { model: modelDir, out } = o;
  const config = await loadModelConfig(modelDir);
  const kValues = o.kValues;
  const alphas = o.alpha;
  const lnN = Math.log(config.numExperts);
  const policyConfig: PolicyConfig = { kind: 'entropy', kValues, thresholds: alphas.map((a) => a * lnN) };
  const profile: RoutingProfile = {
    kmoeRoutingProfile: profileVersionFor(policyConfig),
    policy: policyConfig,
    model: profileModel(routingModelOfConfig(config)),
    provenance: {
      name: profileNameOf(out),
      createdAt: new Date().toISOString(),
      method: 'theory',
      alpha: alphas,
      command: `kmoe calibrate --method theory`,
    },
  };
  saveRoutingProfile(out, profile);
  process.stdout.write(
    `${out}: entropy thresholds ${alphas.map((a) => (a * lnN).toFixed(4)).join(', ')} nats (alpha x ln ${config.numExperts})\n`,
  );
  return 0;
}
