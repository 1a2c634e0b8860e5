// `--routing recommended` is the shipped profiles/recommended.json: the compiled CLI resolves the
// name to that file and runs it (a real reduced-K pass over one window of valid.man).

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadRoutingProfile } from '../../../shared/routing/profile.js';
import { lastJsonLine, runCli } from '../../helpers/cli.js';
import { MODEL_DIR, ROOT } from '../../helpers/paths.js';

describe('--routing recommended', () => {
  it('runs profiles/recommended.json, a calibrated profile of the demo model, never the default', async () => {
    const file = path.join(ROOT, 'profiles', 'recommended.json');
    const profile = loadRoutingProfile(file);
    // Calibrated on first halves only: the provenance names its data.
    expect(JSON.stringify(profile.provenance?.data)).toMatch(/windows=0:/);
    const args = [
      'eval',
      '--model',
      MODEL_DIR,
      '--ids',
      'data/eval/valid.man.u16',
      '--windows',
      '0:1',
      '--json',
    ];
    const r = await runCli([...args, '--routing', 'recommended'], { timeoutMs: 300_000 });
    expect(r.code).toBe(0);
    const report = lastJsonLine(r.stdout) as { routing: string; avgK: number };
    // The name becomes the shipped file's path before anything else sees it.
    expect(report.routing).toBe(file);
    expect(report.avgK).toBeLessThan(2);
    const native = lastJsonLine((await runCli(args, { timeoutMs: 300_000 })).stdout) as { avgK: number };
    expect(native.avgK).toBe(2);
    expect(readFileSync(file, 'utf8')).toContain('"kmoeRoutingProfile"');
  });
});
