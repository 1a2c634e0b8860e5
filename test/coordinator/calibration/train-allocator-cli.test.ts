// `kmoe train-allocator` end to end on a small slice of the calibration half: the profile it writes
// is version 2, loads, and holds its budget on the held-out fold when `kmoe eval` re-measures it.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadRoutingProfile } from '../../../shared/routing/profile.js';
import { runCli } from '../../helpers/cli.js';
import { MODEL_DIR } from '../../helpers/paths.js';

const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-train-allocator-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('kmoe train-allocator', () => {
  it('fits heads, searches on fold A, chooses on fold B within the budget and saves experts', async () => {
    const out = path.join(dir, 'allocator.json');
    const r = await runCli(
      [
        'train-allocator',
        '--model',
        MODEL_DIR,
        '--ids',
        'data/eval/valid.docs.u16',
        '--windows',
        '0:16',
        '--train-windows',
        '4',
        '--search-windows',
        '4',
        '--holdout-windows',
        '8',
        '--step',
        '0.5',
        '--search-budget',
        '2',
        '--budget',
        '1',
        '--out',
        out,
      ],
      { timeoutMs: 600_000 },
    );
    expect(r.code).toBe(0);
    const profile = loadRoutingProfile(out);
    expect(profile.kmoeRoutingProfile).toBe(2);
    expect(profile.policy.kind).toBe('allocator');
    const prov = profile.provenance!;
    // Windows 0:16 of one file: folds of 8 even and 8 odd windows.
    expect(prov['trainWindows']).toBe(4);
    expect(prov['holdoutWindows']).toBe(8);
    expect(prov['trainTokens']).toBe(4 * 256);
    expect(prov['pplIncrease'] as number).toBeLessThanOrEqual(0.01);
    expect(prov.avgK!).toBeLessThanOrEqual(2);
    expect(prov.data).toEqual(['data/eval/valid.docs.u16#windows=0:16']);
  }, 600_000);
});
