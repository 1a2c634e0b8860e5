// `kmoe calibrate` end to end on a small slice of the calibration half, and the profiles it writes
// used by `kmoe eval`: each method's promise is checked on real forward passes.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadRoutingProfile } from '../../../shared/routing/profile.js';
import { lastJsonLine, runCli } from '../../helpers/cli.js';
import { MODEL_DIR } from '../../helpers/paths.js';

const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-calibrate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const DATA = ['--ids', 'data/eval/valid.docs.u16,data/eval/valid.code.u16', '--windows', '0:12'];

describe('kmoe calibrate', () => {
  it('theory: entropy thresholds alpha * ln N', async () => {
    const out = path.join(dir, 'theory.json');
    const r = await runCli([
      'calibrate',
      '--model',
      MODEL_DIR,
      '--method',
      'theory',
      '--policy',
      'entropy',
      '--alpha',
      '0.5',
      '--out',
      out,
    ]);
    expect(r.code).toBe(0);
    const profile = loadRoutingProfile(out);
    expect(profile.policy).toEqual({ kind: 'entropy', kValues: [1, 2], thresholds: [0.5 * Math.log(8)] });
    expect(profile.provenance?.method).toBe('theory');
  });

  it('percentile: hits the target average K on its calibration data', async () => {
    const out = path.join(dir, 'pct.json');
    const r = await runCli([
      'calibrate',
      '--model',
      MODEL_DIR,
      '--method',
      'percentile',
      '--policy',
      'ratio',
      '--target-avg-k',
      '1.6',
      ...DATA,
      '--out',
      out,
    ]);
    expect(r.code).toBe(0);
    const profile = loadRoutingProfile(out);
    expect(profile.policy.kind).toBe('ratio');
    expect(Math.abs(profile.provenance!.avgK! - 1.6)).toBeLessThan(0.02);
    expect(profile.model?.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    const ev = await runCli([
      'eval',
      '--model',
      MODEL_DIR,
      '--ids',
      'data/eval/valid.docs.u16',
      '--windows',
      '0:12',
      '--routing',
      out,
      '--json',
    ]);
    expect(ev.code).toBe(0);
    expect(Math.abs((lastJsonLine(ev.stdout)['avgK'] as number) - 1.6)).toBeLessThan(0.05);
  });

  it('quality: stays within the perplexity budget on the calibration windows and saves experts', async () => {
    const out = path.join(dir, 'quality.json');
    const r = await runCli([
      'calibrate',
      '--model',
      MODEL_DIR,
      '--method',
      'quality',
      '--policy',
      'skip',
      '--budget',
      '2',
      '--step',
      '0.25',
      '--search-windows',
      '24',
      ...DATA,
      '--out',
      out,
    ]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/search \[/);
    const profile = loadRoutingProfile(out);
    const prov = profile.provenance!;
    expect(prov['pplIncrease'] as number).toBeLessThanOrEqual(0.02);
    expect(prov.avgK!).toBeLessThan(2);
    expect(profile.policy.kind).toBe('skip');
    // Skip profiles carry the calibrated expert means that stand in for skipped experts, in the
    // oldest profile version that has them (1), so older releases read them.
    const written = JSON.parse(readFileSync(out, 'utf8'));
    expect(written.policy.expertMeans.shape).toEqual([4, 8, 256]);
    expect(written.kmoeRoutingProfile).toBe(1);
  });

  it('skip with linear substitutes: a version-3 profile whose prior beats the means at the same K on unseen windows', async () => {
    // 96 calibration windows: a rank-8 fit of 257 inputs needs a few hundred rank-2 tokens per expert.
    const profile = async (name: string, extra: string[]) => {
      const out = path.join(dir, name);
      const r = await runCli([
        'calibrate',
        '--model',
        MODEL_DIR,
        '--method',
        'percentile',
        '--policy',
        'skip',
        '--target-avg-k',
        '1.4',
        '--windows',
        '0:48',
        ...extra,
        '--out',
        out,
      ]);
      expect(r.code).toBe(0);
      return { out, r, json: JSON.parse(readFileSync(out, 'utf8')) };
    };
    const sub = await profile('sub.json', ['--substitute-rank', '8', '--substitute-windows', '64']);
    expect(sub.r.stderr).toMatch(/substitutes \[/);
    expect(sub.r.stdout).toMatch(/on 96 calibration windows \(64 fitting the substitutes, verified on 32\)/);
    const means = await profile('means.json', []);
    expect(sub.json.kmoeRoutingProfile).toBe(3);
    expect(sub.json.policy.expertSubstitutes.shape).toEqual([4, 8, 8, 256]);
    expect(sub.json.policy.expertMeans).toBeUndefined();
    const prov = sub.json.provenance;
    expect(prov.substitutes.rank).toBe(8);
    expect(prov.substitutes.windows).toBe(64);
    expect(prov.verifiedWindows).toBe(32);
    for (const share of prov.substitutes.explainedPerLayer as number[]) {
      expect(share).toBeGreaterThan(0);
      expect(share).toBeLessThan(1);
    }
    // Same thresholds (from the same native router signals), so K differs only where a prior
    // changed the hidden states later layers route on. On windows neither calibration saw, the
    // substitutes' prior must cost less perplexity than the means'.
    const evaluate = async (routing: string) => {
      const ev = await runCli([
        'eval',
        '--model',
        MODEL_DIR,
        '--ids',
        'data/eval/valid.docs.u16',
        '--windows',
        '48:64',
        '--routing',
        routing,
        '--json',
      ]);
      expect(ev.code).toBe(0);
      return lastJsonLine(ev.stdout) as { perplexity: number; avgK: number };
    };
    const [a, b] = [await evaluate(sub.out), await evaluate(means.out)];
    expect(Math.abs(a.avgK - b.avgK)).toBeLessThan(0.02);
    expect(a.perplexity).toBeLessThan(b.perplexity);
  });

  it('refuses substitute options that cannot apply: wrong policy or method, no rank, means off, too many windows', async () => {
    const base = ['calibrate', '--model', MODEL_DIR, '--target-avg-k', '1.5'];
    const cases: [string[], RegExp][] = [
      [
        ['--policy', 'ratio', '--substitute-rank', '8'],
        /--substitute-rank .* needs --policy skip, not ratio/,
      ],
      [['--policy', 'skip', '--substitute-rank', '8', '--expert-means', 'off'], /replaces the expert means/],
      [
        ['--policy', 'skip', '--substitute-rank', '257'],
        /--substitute-rank 257 exceeds the model's hidden size 256/,
      ],
      [
        ['--policy', 'skip', '--substitute-windows', '64'],
        /--substitute-windows configures the substitute fit: it needs --substitute-rank/,
      ],
      [['--policy', 'skip', '--substitute-rank', '8', '--substitute-ridge', '0'], /--substitute-ridge/],
      [
        ['--policy', 'skip', '--substitute-rank', '8', '--windows', '0:4'],
        /--substitute-windows 256: only 8 of the 8 calibration windows there; the fit needs fewer than that/,
      ],
      [
        [
          '--policy',
          'skip',
          '--substitute-rank',
          '8',
          '--method',
          'quality',
          '--windows',
          '0:4',
          '--search-windows',
          '6',
          '--substitute-windows',
          '2',
        ],
        /only 2 of the 8 calibration windows are outside the 6 --search-windows/,
      ],
      [['--policy', 'entropy', '--substitute-rank', '8', '--method', 'theory'], /--method theory uses none/],
    ];
    for (const [args, message] of cases) {
      // percentile unless the case names its method (a flag is given once).
      const method = args.includes('--method') ? [] : ['--method', 'percentile'];
      const r = await runCli([...base, ...method, ...args, '--out', path.join(dir, 'refused.json')]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });

  it('rejects a policy it cannot calibrate and a missing target', async () => {
    const bad = await runCli([
      'calibrate',
      '--model',
      MODEL_DIR,
      '--method',
      'percentile',
      '--policy',
      'topk',
      '--out',
      path.join(dir, 'x.json'),
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--policy must be one of entropy, topp, ratio, skip/);
    const noTarget = await runCli([
      'calibrate',
      '--model',
      MODEL_DIR,
      '--method',
      'percentile',
      '--policy',
      'skip',
      '--out',
      path.join(dir, 'y.json'),
    ]);
    expect(noTarget.code).toBe(2);
    expect(noTarget.stderr).toMatch(/--target-avg-k is required/);
  });
});

describe('kmoe eval --sweep', () => {
  it('evaluates every policy family and writes the Pareto chart and its data', async () => {
    const chart = path.join(dir, 'pareto.svg');
    const r = await runCli([
      'eval',
      '--model',
      MODEL_DIR,
      '--ids',
      'data/eval/valid.man.u16',
      '--windows',
      '0:6',
      '--sweep',
      '--chart',
      chart,
    ]);
    expect(r.code).toBe(0);
    const data = JSON.parse(readFileSync(chart.replace(/\.svg$/, '.json'), 'utf8')) as {
      points: { series: string; avgK: number }[];
    };
    expect(new Set(data.points.map((p) => p.series))).toEqual(
      new Set(['fixed K', 'entropy', 'top-p', 'ratio', 'skip']),
    );
    expect(data.points.find((p) => p.series === 'fixed K' && p.avgK === 1)).toBeDefined();
    const svg = readFileSync(chart, 'utf8');
    expect(svg).toMatch(/^<\?xml/);
    expect(svg).toMatch(/average experts per token/);
    expect(r.stdout).toMatch(/\| skip \| skip:0.2 \|/);
  });
});
