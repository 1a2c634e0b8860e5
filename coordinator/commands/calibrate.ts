// `kmoe calibrate`: write a routing profile from router statistics of calibration text, by theory
// (entropy thresholds alpha * ln N), percentile (per-layer thresholds hitting a target average K) or
// quality (fewest experts within a perplexity budget, measured with real reduced-K forward passes).

import path from 'node:path';
import { UsageError } from '../../shared/errors/usage-error.js';
import { type RoutingProfile, saveRoutingProfile } from '../../shared/routing/profile.js';
import type { PolicyConfig } from '../../shared/routing/registry.js';
import { ProgressBar } from '../bench/report/progress.js';
import { calibrate } from '../calibration/calibrate.js';
import { loadCorpus } from '../calibration/corpus.js';
import { CALIBRATED_POLICIES, isCalibratedPolicy } from '../calibration/skip-rates.js';
import { EngineClient } from '../engine/engine-client.js';
import { STANDARD_WINDOW } from '../evaluation/perplexity.js';
import { COMPUTE_OPTIONS, num, parse, required, sessionSettings, str } from './args.js';

const DEFAULT_DATA = 'data/eval/valid.docs.u16,data/eval/valid.code.u16';

export const usage = `kmoe calibrate --model DIR --method theory|percentile|quality --policy POLICY --out FILE [options]

Writes a versioned routing profile (JSON) that records how it was made. Calibration data are
windows of 256 token ids; by default the FIRST half of each file, so the second half stays unseen
for reporting (kmoe eval --windows second-half).

  --model DIR            checkpoint directory
  --method M             theory: entropy thresholds alpha_i * ln(N) (no data needed)
                         percentile: per-layer thresholds at the signal percentiles that give
                           every layer the target average K
                         quality: fewest experts per token within a perplexity budget, searched
                           greedily over per-layer skip rates with real forward passes
  --policy P             ${CALIBRATED_POLICIES.join(' | ')} (theory: entropy only); K is chosen
                         between 1 and the native K = 2
  --out FILE             profile to write
  --ids FILES            comma-separated .u16 corpora (default ${DEFAULT_DATA})
  --windows RANGE        window range within each file (default first-half)
  --alpha A[,A...]       theory: threshold multipliers, one fewer than --k-values (default 0.5)
  --k-values K1,K2[,..]  theory: K values (default 1,2)
  --target-avg-k K       percentile: average experts per token to hit (1..2)
  --budget PCT           quality: allowed perplexity increase over native top-K, percent (default 1)
  --search-windows N     quality: windows (spread over the data) each search step measures (default 256)
  --step S               quality: skip-rate step per layer (default 0.1)
  --expert-means on|off  skip: replace each skipped expert by its calibrated mean output times its
                         native weight (default on; the means are stored in the profile)
  --threads N            onnxruntime threads (default: all cores)`;

export async function run(argv: readonly string[]): Promise<number> {
  const p = parse(argv, {
    model: { type: 'string' },
    method: { type: 'string' },
    policy: { type: 'string' },
    out: { type: 'string' },
    ids: { type: 'string' },
    windows: { type: 'string' },
    alpha: { type: 'string' },
    'k-values': { type: 'string' },
    'target-avg-k': { type: 'string' },
    budget: { type: 'string' },
    'search-windows': { type: 'string' },
    step: { type: 'string' },
    'expert-means': { type: 'string' },
    ...COMPUTE_OPTIONS,
  });
  const modelDir = required(p, 'model');
  const method = required(p, 'method');
  const policy = required(p, 'policy');
  const out = required(p, 'out');
  if (!isCalibratedPolicy(policy)) {
    throw new UsageError(`--policy must be one of ${CALIBRATED_POLICIES.join(', ')}, got '${policy}'`);
  }
  if (method === 'theory') return theory(p, modelDir, policy, out);
  if (method !== 'percentile' && method !== 'quality') {
    throw new UsageError(`--method must be theory, percentile or quality, got '${method}'`);
  }
  const files = (str(p, 'ids') ?? DEFAULT_DATA).split(',').filter((f) => f !== '');
  const range = str(p, 'windows') ?? 'first-half';
  const corpus = await loadCorpus(files, range, STANDARD_WINDOW);
  const targetAvgK =
    method === 'percentile' ? num(p, 'target-avg-k', Number.NaN, { min: 1, max: 2 }) : undefined;
  if (targetAvgK !== undefined && Number.isNaN(targetAvgK))
    throw new UsageError('--target-avg-k is required');
  const budget = num(p, 'budget', 1, { min: 0, max: 100 }) / 100;
  const searchWindows = num(p, 'search-windows', 256, { integer: true, min: 1 });
  const step = num(p, 'step', 0.1, { min: 0.01, max: 1 });

  const engine = await EngineClient.start({ modelDir, settings: sessionSettings(p) });
  try {
    const name = path.basename(out).replace(/\.json$/, '');
    const bars = new Map<string, ProgressBar>();
    const profile = await calibrate(engine, {
      policy,
      method:
        method === 'percentile'
          ? { kind: 'percentile', targetAvgK: targetAvgK! }
          : { kind: 'quality', budget, searchWindows, step },
      corpus,
      expertMeans: (str(p, 'expert-means') ?? 'on') === 'on',
      name,
      command: `kmoe calibrate ${argv.join(' ')}`,
      onPhase: (phase, done, total, note) => {
        let bar = bars.get(phase);
        if (!bar) {
          for (const other of bars.values()) other.finish();
          bar = new ProgressBar({
            label: phase,
            total,
            unit: phase === 'signals' ? 'windows' : 'evaluations',
          });
          bars.set(phase, bar);
        }
        bar.update(done, note);
      },
    });
    for (const bar of bars.values()) bar.finish();
    saveRoutingProfile(out, profile);
    const prov = profile.provenance!;
    process.stdout.write(
      `${out}: ${policy} (${method}) on ${corpus.windows} calibration windows: avg K ${prov.avgK!.toFixed(3)} ` +
        `(saving ${((1 - prov.avgK! / engine.info.nativeK) * 100).toFixed(1)}% vs native), perplexity ` +
        `${prov.ppl!.toFixed(4)} vs native ${(prov['nativePpl'] as number).toFixed(4)} ` +
        `(+${((prov['pplIncrease'] as number) * 100).toFixed(2)}%)\n`,
    );
  } finally {
    await engine.close();
  }
  return 0;
}

async function theory(
  p: Parameters<typeof str>[0],
  modelDir: string,
  policy: string,
  out: string,
): Promise<number> {
  if (policy !== 'entropy')
    throw new UsageError('--method theory defines entropy thresholds: use --policy entropy');
  const { loadModelConfig } = await import('../../shared/model/config.js');
  const config = await loadModelConfig(modelDir);
  const kValues = (str(p, 'k-values') ?? '1,2').split(',').map(Number);
  const alphas = (str(p, 'alpha') ?? '0.5').split(',').map(Number);
  if (alphas.some((a) => !(a > 0)) || kValues.some((k) => !Number.isInteger(k))) {
    throw new UsageError('--alpha takes positive numbers and --k-values integers');
  }
  const lnN = Math.log(config.numExperts);
  const policyConfig: PolicyConfig = { kind: 'entropy', kValues, thresholds: alphas.map((a) => a * lnN) };
  const profile: RoutingProfile = {
    kmoeRoutingProfile: 1,
    policy: policyConfig,
    model: { numLayers: config.numLayers, numExperts: config.numExperts, nativeK: config.numExpertsPerTok },
    provenance: {
      name: out
        .split('/')
        .pop()!
        .replace(/\.json$/, ''),
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
