// `kmoe bench failover`: a timeline of requests/s and errors while workers fail and one joins.
// Three local workers (A 0-3, B 4-7, C 0-7: every expert replicated); the engine runs back-to-back
// requests (a prefill of one eval window's first tokens, then its release). At 1/4 of the run C is
// killed (-9): its experts have replicas, so nothing should fail. At 2/4 B is killed: experts 4-7
// have no live holder, requests fail (503 in `kmoe serve`). At 3/4 a worker D holding 4-7, started
// before the run, joins (EngineClient.joinWorker, as a Membership join does): requests succeed
// again. Writes JSON
// and an SVG line chart (Vega-Lite via bench/report).

import { readU16Ids } from '../../shared/data/token-ids.js';
import type { SessionSettings } from '../../shared/onnx/session.js';
import type { WireDType } from '../../shared/protocol/wire-dtype.js';
import { machineInfo } from '../../shared/runtime/machine.js';
import { writeOutputFile } from '../../shared/runtime/output-file.js';
import { counted } from '../../shared/text/counted.js';
import { type LocalCluster, startLocalCluster } from '../cluster/local-cluster.js';
import { EngineClient } from '../engine/engine-client.js';
import { renderLineChart } from './report/chart.js';

export interface BenchFailoverOptions {
  readonly model: string;
  readonly settings: SessionSettings;
  readonly ids: string;
  /** Length of the run, seconds. */
  readonly seconds: number;
  /** Tokens per request (a prefill). */
  readonly tokens: number;
  readonly wire: WireDType;
  readonly out: string;
  readonly chart: string;
}

const BUCKET_S = 0.25;

interface Event {
  readonly at: number;
  readonly what: string;
}

export async function run(o: BenchFailoverOptions, argv: readonly string[]): Promise<number> {
  const { model: modelDir, settings } = o;
  const ids = await readU16Ids(o.ids);
  const prompt = Array.from(ids.subarray(0, o.tokens));
  const log = (line: string) => process.stderr.write(`bench failover: ${line}\n`);
  const cluster = await startLocalCluster({
    modelDir,
    expertSets: [
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [0, 1, 2, 3, 4, 5, 6, 7],
    ],
    threads: 1,
  });
  // D is started now (loading takes seconds) and joins the membership at 3/4 of the run.
  const spare: LocalCluster = await startLocalCluster({ modelDir, expertSets: [[4, 5, 6, 7]], threads: 1 });
  const engine = await EngineClient.start({
    modelDir,
    settings,
    experts: { kind: 'remote', workers: cluster.urls, wireDtype: o.wire },
  });
  const ok: number[] = [];
  const failed: number[] = [];
  const events: Event[] = [];
  const errors = new Map<string, number>();
  try {
    const t0 = performance.now();
    const now = () => (performance.now() - t0) / 1000;
    const at = (fraction: number, what: string, act: () => Promise<void> | void) =>
      new Promise<void>((resolve, reject) => {
        setTimeout(
          () => {
            events.push({ at: now(), what });
            log(`${now().toFixed(2)} s: ${what}`);
            Promise.resolve(act()).then(resolve, reject);
          },
          fraction * o.seconds * 1000,
        );
      });
    const script = Promise.all([
      at(0.25, 'C (0-7) killed', () => {
        cluster.workers[2]!.process.kill('SIGKILL');
      }),
      at(0.5, 'B (4-7) killed', () => {
        cluster.workers[1]!.process.kill('SIGKILL');
      }),
      at(0.75, 'D (4-7) joins', async () => {
        await engine.joinWorker(spare.urls[0]!);
        events.push({ at: now(), what: 'D connected' });
      }),
    ]);
    let n = 0;
    while (now() < o.seconds) {
      const seqId = `r${n++}`;
      try {
        await engine.step([{ seqId, tokens: prompt }]);
        ok.push(now());
      } catch (err) {
        failed.push(now());
        const key = (err as Error).message.replace(/ws:\/\/\S+/g, 'ws://…');
        errors.set(key, (errors.get(key) ?? 0) + 1);
        // Failing fast (no live holder) would otherwise spin.
        await new Promise((r) => setTimeout(r, 5));
      }
      await engine.release([seqId]);
    }
    await script;
  } finally {
    await engine.close();
    await cluster.stop();
    await spare.stop();
  }

  const buckets = Math.ceil(o.seconds / BUCKET_S);
  const rate = (times: readonly number[]) => {
    const counts = new Array<number>(buckets).fill(0);
    for (const t of times) counts[Math.min(buckets - 1, Math.floor(t / BUCKET_S))]!++;
    return counts.map((c, i) => ({ x: (i + 1) * BUCKET_S, y: c / BUCKET_S }));
  };
  const result = {
    benchmark: 'failover',
    command: `kmoe bench failover ${argv.join(' ')}`.trim(),
    machine: machineInfo(),
    note: 'rates depend on the machine; record on an idle one',
    wire: o.wire,
    tokensPerRequest: o.tokens,
    bucketSeconds: BUCKET_S,
    events,
    okTotal: ok.length,
    failedTotal: failed.length,
    errors: Object.fromEntries(errors),
    requestsPerSecond: rate(ok),
    errorsPerSecond: rate(failed),
  };
  writeOutputFile(o.out, `${JSON.stringify(result, null, 2)}\n`);
  writeOutputFile(
    o.chart,
    await renderLineChart({
      title: 'Failover: C (replica) killed, B (sole holder of 4-7) killed, D (4-7) joins',
      xLabel: 'seconds',
      yLabel: 'per second',
      series: [
        { name: 'requests completed', points: result.requestsPerSecond },
        { name: 'requests failed', points: result.errorsPerSecond, dashed: true },
      ],
      referenceLines: events
        .filter((e) => e.what !== 'D connected')
        .map((e) => ({ axis: 'x' as const, value: e.at, label: e.what })),
    }),
  );
  process.stdout.write(
    `${counted(ok.length, 'request')} completed, ${failed.length} failed; events: ${events.map((e) => `${e.at.toFixed(2)} s ${e.what}`).join('; ')}\nwrote ${o.out} and ${o.chart}\n`,
  );
  return 0;
}
