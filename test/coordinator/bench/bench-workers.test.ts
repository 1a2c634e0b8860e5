// `kmoe bench workers` end to end: two engines (experts in process, experts in 2 real local worker
// processes), the same batched decode on both, ratios per round, and a step through the workers
// broken down from the coordinator's round trips and the workers' own /metrics.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../helpers/cli.js';
import { MODEL_DIR } from '../../helpers/paths.js';

const dir = mkdtempSync(join(tmpdir(), 'kmoe-bench-workers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('kmoe bench workers', () => {
  it('compares in-process and worker decode in the same rounds and breaks a worker step down', async () => {
    const out = join(dir, 'tax.json');
    const r = await runCli([
      'bench',
      'workers',
      '--model',
      MODEL_DIR,
      '--streams',
      '1,3',
      '--tokens',
      '4',
      '--repeats',
      '2',
      '--out',
      out,
    ]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\| streams \| in process tok\/s \| 2 workers tok\/s \|/m);
    const json = JSON.parse(readFileSync(out, 'utf8')) as {
      workers: number;
      routing: string;
      rows: {
        streams: number;
        ratio: number;
        samples: { inProcess: number[]; workers: number[]; ratios: number[] };
        workersStep: {
          wallMsPerStep: number;
          coordinatorOnnxruntimeMsPerStep: Record<string, number>;
          workers: {
            requestsPerStep: number;
            roundTripMicros: number;
            serviceMicros: number;
            transportMicros: number;
          }[];
        };
      }[];
    };
    expect(json).toMatchObject({ workers: 2, routing: 'topk:2' });
    expect(json.rows.map((x) => x.streams)).toEqual([1, 3]);
    for (const row of json.rows) {
      expect(row.samples.ratios).toHaveLength(2);
      row.samples.ratios.forEach((q, i) => {
        expect(q).toBeCloseTo(row.samples.workers[i]! / row.samples.inProcess[i]!, 10);
      });
      const step = row.workersStep;
      // The coordinator runs the dense layers and the head, never an expert graph.
      expect(Object.keys(step.coordinatorOnnxruntimeMsPerStep).sort()).toEqual(['dense', 'lm-head']);
      expect(step.workers).toHaveLength(2);
      // 4 MoE layers: at most one request per worker per layer; with 3 streams x 2 experts over
      // 4 experts per worker, both are asked at (nearly) every layer.
      const requests = step.workers.reduce((a, w) => a + w.requestsPerStep, 0);
      expect(requests).toBeGreaterThan(0);
      expect(requests).toBeLessThanOrEqual(8);
      for (const w of step.workers) {
        if (w.requestsPerStep === 0) continue;
        // A round trip contains the worker's service time of the same request.
        expect(w.serviceMicros).toBeGreaterThan(0);
        expect(w.roundTripMicros).toBeGreaterThan(w.serviceMicros);
        expect(w.transportMicros).toBeCloseTo(w.roundTripMicros - w.serviceMicros, 6);
      }
    }
  });
});
