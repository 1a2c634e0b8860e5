// `kmoe bench adaptive-k`: the README's adaptive-K experiment in one command. Calibrates every
// policy with the quality method on the first half of valid.docs + valid.code, then reports each
// profile on data calibration never saw — the second halves and valid.man (a domain absent from
// training) — next to the frontier of global rules, with a Pareto chart.

import fs from 'node:fs/promises';
import path from 'node:path';
import type { SessionSettings } from '../../shared/onnx/session.js';
import { loadRoutingProfile, saveRoutingProfile } from '../../shared/routing/profile.js';
import type { PolicyConfig } from '../../shared/routing/registry.js';
import { machineInfo } from '../../shared/runtime/machine.js';
import { writeOutputFile } from '../../shared/runtime/output-file.js';
import { calibrate } from '../calibration/calibrate.js';
import { type Corpus, loadCorpus } from '../calibration/corpus.js';
import { signedPercent } from '../calibration/format.js';
import type { CalibratedPolicy } from '../calibration/skip-rates.js';
import { EngineClient } from '../engine/engine-client.js';
import { evaluatePerplexity } from '../evaluation/perplexity.js';
import { defaultSweep, runSweep, type SweepPoint } from '../evaluation/sweep.js';
import { STANDARD_WINDOW } from '../evaluation/windows.js';
import { ProgressBar } from './report/progress.js';
import { sweepChart } from './report/sweep-chart.js';

export interface BenchAdaptiveKOptions {
  readonly model: string;
  readonly settings: SessionSettings;
  readonly policies: readonly CalibratedPolicy[];
  /** Perplexity budget over native top-K, percent. */
  readonly budget: number;
  readonly searchWindows: number;
  readonly step: number;
  /** Where calibrated profiles are written. */
  readonly profilesDir: string;
  /** JSON, markdown table and chart. */
  readonly outDir: string;
  /** Profiles already made (e.g. by kmoe train-allocator) reported next to the calibrated ones. */
  readonly profiles: readonly string[];
  /**
   * The global-rule frontier from an earlier run's adaptive-k.json (same model, same unseen half)
   * instead of re-measuring it; its native perplexity must equal this run's.
   */
  readonly frontierFrom?: string;
}

const CAL = ['data/eval/valid.docs.u16', 'data/eval/valid.code.u16'];
const MAN = ['data/eval/valid.man.u16'];

interface Row {
  readonly policy: string;
  readonly profile: string;
  readonly calibration: { avgK: number; pplIncrease: number };
  readonly test: Measured;
  readonly man: Measured;
}

interface Measured {
  readonly avgK: number;
  readonly saving: number;
  readonly perplexity: number;
  readonly pplIncrease: number;
}

export async function run(o: BenchAdaptiveKOptions, argv: readonly string[]): Promise<number> {
  const { model: modelDir, policies, searchWindows, step, profilesDir, outDir } = o;
  const budget = o.budget / 100;

  const cal = await loadCorpus(CAL, 'first-half', STANDARD_WINDOW);
  const test = await loadCorpus(CAL, 'second-half', STANDARD_WINDOW);
  const man = await loadCorpus(MAN, undefined, STANDARD_WINDOW);
  const engine = await EngineClient.start({ modelDir, settings: o.settings });
  try {
    const nativeK = engine.info.nativeK;
    const nativeTest = await evaluatePerplexity(engine, test.ids, { routing: `topk:${nativeK}` });
    const nativeMan = await evaluatePerplexity(engine, man.ids, { routing: `topk:${nativeK}` });
    const measure = async (corpus: Corpus, routing: string, nativePpl: number): Promise<Measured> => {
      const r = await evaluatePerplexity(engine, corpus.ids, { routing });
      return {
        avgK: r.avgK,
        saving: r.savingVsNative,
        perplexity: r.perplexity,
        pplIncrease: r.perplexity / nativePpl - 1,
      };
    };

    const rows: Row[] = [];
    for (const policy of policies) {
      const name = `${policy}-quality-${Math.round(budget * 1000) / 10}pct`;
      const file = path.join(profilesDir, `${name}.json`);
      const bar = new ProgressBar({ label: `calibrate ${policy}`, total: 3, unit: 'phases' });
      const profile = await calibrate(engine, {
        policy,
        method: { kind: 'quality', budget, searchWindows, step },
        corpus: cal,
        expertMeans: true,
        name,
        command: `kmoe bench adaptive-k ${argv.join(' ')}`,
        onPhase: (phase, done, total, note) =>
          bar.update(
            ['signals', 'search', 'verify'].indexOf(phase),
            `${phase} ${done}/${total} ${note ?? ''}`,
          ),
      });
      bar.finish();
      saveRoutingProfile(file, profile);
      const prov = profile.provenance!;
      rows.push({
        policy,
        profile: file,
        calibration: { avgK: prov.avgK!, pplIncrease: prov['pplIncrease'] as number },
        test: await measure(test, file, nativeTest.perplexity),
        man: await measure(man, file, nativeMan.perplexity),
      });
    }

    for (const file of o.profiles) {
      const profile = loadRoutingProfile(file);
      const prov = profile.provenance;
      const bar = new ProgressBar({ label: `measure ${path.basename(file)}`, total: 2, unit: 'corpora' });
      const t = await measure(test, file, nativeTest.perplexity);
      bar.update(1);
      const m = await measure(man, file, nativeMan.perplexity);
      bar.finish();
      rows.push({
        policy: describePolicy(profile.policy),
        profile: file,
        calibration: {
          avgK: prov?.avgK ?? Number.NaN,
          pplIncrease: (prov?.['pplIncrease'] as number) ?? Number.NaN,
        },
        test: t,
        man: m,
      });
    }

    // One series per profile: they are separate points, not a curve. With a stored frontier the
    // profiles' points are the unseen-half measurements above (no second pass over the same data).
    const stored = o.frontierFrom ? await storedFrontier(o.frontierFrom, nativeTest.perplexity) : undefined;
    let points: SweepPoint[];
    if (stored) {
      points = [
        ...stored,
        ...rows.map((r) => ({
          series: `calibrated ${r.policy}`,
          routing: r.profile,
          perplexity: r.test.perplexity,
          avgK: r.test.avgK,
          savingVsNative: r.test.saving,
          pplIncrease: r.test.pplIncrease,
        })),
      ];
    } else {
      const series = defaultSweep(nativeK);
      for (const r of rows) series.push({ name: `calibrated ${r.policy}`, routings: [r.profile] });
      const total = series.reduce((n, s) => n + s.routings.length, 0);
      const sweepBar = new ProgressBar({ label: 'frontier (test half)', total, unit: 'evaluations' });
      points = (await runSweep(engine, test.ids, series, (done) => sweepBar.update(done))).points;
      sweepBar.finish();
    }

    const chart = path.join(outDir, 'pareto-test-half.svg');
    writeOutputFile(
      chart,
      await sweepChart(
        'Perplexity vs experts per token, docs+code second halves (unseen)',
        nativeTest.perplexity,
        points,
      ),
    );
    const result = {
      benchmark: 'adaptive-k',
      command: `kmoe bench adaptive-k ${argv.join(' ')}`.trim(),
      machine: machineInfo(),
      budget,
      calibration: cal.parts,
      test: test.parts,
      man: man.parts,
      native: { test: nativeTest.perplexity, man: nativeMan.perplexity },
      rows,
      frontier: points,
      ...(o.frontierFrom ? { frontierFrom: o.frontierFrom } : {}),
    };
    writeOutputFile(path.join(outDir, 'adaptive-k.json'), `${JSON.stringify(result, null, 2)}\n`);
    const table = formatTable(rows, points, budget, policies.length > 0);
    writeOutputFile(path.join(outDir, 'adaptive-k.md'), table);
    process.stdout.write(`${table}wrote ${outDir}/adaptive-k.json, adaptive-k.md and ${chart}\n`);
  } finally {
    await engine.close();
  }
  return 0;
}

/** Global-rule points of an earlier adaptive-k.json, checked against this run's native perplexity. */
async function storedFrontier(file: string, nativePpl: number): Promise<SweepPoint[]> {
  const json = JSON.parse(await fs.readFile(file, 'utf8')) as { frontier?: SweepPoint[] };
  const frontier = json.frontier ?? [];
  const native = frontier.find((p) => p.routing === 'topk:2');
  if (!native || Math.abs(native.perplexity / nativePpl - 1) > 1e-6) {
    throw new RangeError(
      `${file}: its native perplexity ${native?.perplexity} is not this run's ${nativePpl}; re-measure the frontier`,
    );
  }
  return frontier;
}

function formatTable(
  rows: readonly Row[],
  frontier: readonly SweepPoint[],
  budget: number,
  calibratedHere: boolean,
): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const inc = signedPercent;
  const lines = [
    calibratedHere
      ? `Calibrated per-layer profiles (quality method, budget ${pct(budget)} on the calibration half):`
      : 'Profiles given with --profiles (each calibrated as its provenance records):',
    '',
    '| policy | profile | calibration half: avg K / ppl | unseen docs+code half: avg K / saving / ppl | valid.man (unseen domain): avg K / saving / ppl |',
    '|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.policy} | ${r.profile} | ${r.calibration.avgK.toFixed(3)} / ${inc(r.calibration.pplIncrease)} | ` +
        `${r.test.avgK.toFixed(3)} / ${pct(r.test.saving)} / ${inc(r.test.pplIncrease)} | ` +
        `${r.man.avgK.toFixed(3)} / ${pct(r.man.saving)} / ${inc(r.man.pplIncrease)} |`,
    ),
    '',
    'Best global rule of each family within the same budget on the unseen half (no calibration):',
    '',
    '| family | rule | avg K | saving | ppl |',
    '|---|---|---|---|---|',
  ];
  for (const family of new Set(frontier.map((f) => f.series))) {
    if (family === 'fixed K' || family.startsWith('calibrated')) continue;
    const ok = frontier.filter((f) => f.series === family && f.pplIncrease <= budget);
    const best = ok.sort((a, b) => a.avgK - b.avgK)[0];
    lines.push(
      best
        ? `| ${family} | ${best.routing} | ${best.avgK.toFixed(3)} | ${pct(best.savingVsNative)} | ${inc(best.pplIncrease)} |`
        : `| ${family} | none of the swept rules is within budget | | | |`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** What a profile's policy is, for tables and chart legends: its kind and what stands in for skipped experts. */
function describePolicy(policy: PolicyConfig): string {
  if (policy.kind !== 'skip') return policy.kind;
  if (policy.expertSubstitutes) return `skip + substitutes (rank ${policy.expertSubstitutes.shape[2]})`;
  return policy.expertMeans ? 'skip + means' : 'skip';
}
