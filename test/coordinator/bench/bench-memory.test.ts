// `kmoe bench memory` on the demo model: real worker processes, one per format, measured through
// /proc and stopped again; the plan's figures beside them. No size or speed targets (shared CI
// machine): the numbers must be real (positive, peak >= current) and the workers gone.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { processExists } from '../../../coordinator/bench/bench-memory.js';
import { runCli } from '../../helpers/cli.js';
import { MODEL_DIR } from '../../helpers/paths.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kmoe-bench-memory-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('kmoe bench memory', () => {
  it('measures a real worker per format beside the plan, and leaves no worker running', async () => {
    const out = path.join(dir, 'memory.json');
    const r = await runCli([
      'bench',
      'memory',
      '--model',
      MODEL_DIR,
      '--formats',
      'fp32,int4',
      '--experts',
      '0-1',
      '--reserve',
      '0',
      '--out',
      out,
    ]);
    expect(r.stderr).toMatch(/bench memory: int4: peak /);
    expect(r.code).toBe(0);
    const json = JSON.parse(fs.readFileSync(out, 'utf8'));
    expect(json.benchmark).toBe('memory');
    expect(json.experts).toEqual([0, 1]);
    expect(json.moeLayers).toBe(4);
    expect(json.points.map((p: { format: string }) => p.format)).toEqual(['fp32', 'int4']);
    // 2 experts x 4 layers x 3 x 256 x 512 weights: 4 bytes each in fp32, 0.5 + 4/32 in int4.
    const planned = [12_582_912, 1_966_080];
    for (const [i, p] of json.points.entries()) {
      expect(p.plannedExpertBytes).toBe(planned[i]);
      expect(p.plannedTotalBytes).toBe(planned[i]);
      expect(p.peakRssBytes).toBeGreaterThan(0);
      expect(p.readyRssBytes).toBeGreaterThan(0);
      expect(p.peakRssBytes).toBeGreaterThanOrEqual(p.readyRssBytes);
      expect(p.peakOverPlanned).toBeCloseTo(p.peakRssBytes / planned[i]!, 9);
      expect(p.loadSeconds).toBeGreaterThan(0);
      expect(p.exitCode).toBe(0);
      expect(processExists(p.pid)).toBe(false);
    }
    expect(json.points[0].pid).not.toBe(json.points[1].pid);
    expect(r.stdout).toMatch(/^\| int4 \| /m);
  });

  it('refuses bf16 on the CPU provider before starting any worker', async () => {
    const out = path.join(dir, 'bf16.json');
    const r = await runCli(['bench', 'memory', '--model', MODEL_DIR, '--formats', 'bf16', '--out', out]);
    // The list and the device cannot go together: a usage error naming --formats, at parse time.
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^kmoe bench memory: error: --formats: expert weights 'bf16' cannot run on --device cpu/m,
    );
    expect(r.stderr).toMatch(/^hint: use --device cuda for bf16 weights/m);
    expect(r.stderr).not.toMatch(/starting a worker/);
    expect(fs.existsSync(out)).toBe(false);
  });
});
