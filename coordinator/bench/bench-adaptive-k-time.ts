// `kmoe bench adaptive-k-time`: what an adaptive-K routing saves in wall time, in one run. For each
// stream count, native top-K and the candidate routing decode the same prompts greedily, round by
// round interleaved, as one batched step per token for all streams (what the server's scheduler
// does). With experts in this process it also measures the share of wall time spent in expert
// graphs under native routing, and compares the measured speed-up with the ideal
// 1 / (1 - share x saving) that removing exactly the saved expert work would give.

import path from 'node:path';
import { readU16Ids } from '../../shared/data/token-ids.js';
import { machineInfo } from '../../shared/runtime/machine.js';
import { writeOutputFile } from '../../shared/runtime/output-file.js';
import { counted } from '../../shared/text/counted.js';
import type { EngineClient } from '../engine/engine-client.js';
import { batchedDecode } from './batched-decode.js';
import { median } from './report/quantiles.js';

export interface BenchAdaptiveKTimeOptions {
  readonly engine: EngineClient;
  /** The candidate routing (spec or profile path); native is `topk:<nativeK>`. */
  readonly routing: string;
  readonly streams: readonly number[];
  /** Decode steps timed per stream and round. */
  readonly tokens: number;
  readonly repeats: number;
  /** Token ids the prompts are cut from. */
  readonly ids: string;
  /** true when the experts run in this process (the expert-time share is measurable). */
  readonly localExperts: boolean;
  readonly expertsDescription: string;
  readonly out: string;
  readonly command: string;
}

interface Round {
  readonly msPerToken: number;
  readonly activations: number;
  readonly nativeActivations: number;
  /** ms inside expert graphs (null with remote experts). */
  readonly expertMs: number | null;
  readonly wallMs: number;
}

/** Decode steps of each routing before a batch size's timed rounds. */
const WARM_UP_STEPS = 16;

export async function runBenchAdaptiveKTime(o: BenchAdaptiveKTimeOptions): Promise<number> {
  const { engine } = o;
  const info = engine.info;
  const native = `topk:${info.nativeK}`;
  const ids = await readU16Ids(o.ids);
  const decode = async (streams: number, routing: string, tag: string, tokens = o.tokens): Promise<Round> => {
    const { wallMs, activations } = await batchedDecode(engine, {
      ids,
      streams,
      tokens,
      routing,
      tag,
      ...(o.localExperts ? { beforeTimed: async () => void (await engine.timing(true)) } : {}),
    });
    const timing = o.localExperts ? await engine.timing(false) : undefined;
    return {
      msPerToken: wallMs / (tokens * streams),
      activations,
      nativeActivations: tokens * streams * info.routing.numLayers * info.nativeK,
      expertMs: timing ? (timing['expert']?.ms ?? 0) : null,
      wallMs,
    };
  };

  const rows = [];
  for (const streams of o.streams) {
    // Each batch size warms up both routings (first runs of a shape allocate), and the two take
    // turns going first, so neither always meets the machine just after the other.
    const warm = Math.min(o.tokens, WARM_UP_STEPS);
    await decode(streams, native, `warm-n${streams}`, warm);
    await decode(streams, o.routing, `warm-c${streams}`, warm);
    const samples: { native: Round[]; candidate: Round[] } = { native: [], candidate: [] };
    for (let r = 0; r < o.repeats; r++) {
      process.stderr.write(
        `bench adaptive-k-time: ${counted(streams, 'stream')}, round ${r + 1}/${o.repeats}\n`,
      );
      const nativeFirst = r % 2 === 0;
      if (nativeFirst) samples.native.push(await decode(streams, native, `n${streams}-${r}`));
      samples.candidate.push(await decode(streams, o.routing, `c${streams}-${r}`));
      if (!nativeFirst) samples.native.push(await decode(streams, native, `n${streams}-${r}`));
    }
    const msNative = median(samples.native.map((s) => s.msPerToken));
    const msCandidate = median(samples.candidate.map((s) => s.msPerToken));
    const c = samples.candidate[0]!;
    const saving = 1 - c.activations / c.nativeActivations;
    const shares = samples.native.map((s) => (s.expertMs === null ? null : s.expertMs / s.wallMs));
    const share = shares.every((s) => s !== null) ? median(shares as number[]) : null;
    const speedup = msNative / msCandidate;
    const ideal = share === null ? null : 1 / (1 - share * saving);
    rows.push({
      streams,
      msPerTokenNative: msNative,
      msPerTokenCandidate: msCandidate,
      speedup,
      saving,
      expertShareNative: share,
      idealSpeedup: ideal,
      /** (speed-up - 1) / (ideal - 1): the fraction of the ideal gain realised. */
      gainVsIdeal: ideal === null || ideal <= 1 ? null : (speedup - 1) / (ideal - 1),
      samples,
    });
  }
  const result = {
    benchmark: 'adaptive-k-time',
    command: o.command,
    machine: machineInfo(),
    experts: o.expertsDescription,
    routing: o.routing,
    native,
    tokensPerRound: o.tokens,
    repeats: o.repeats,
    rows,
  };
  writeOutputFile(o.out, `${JSON.stringify(result, null, 2)}\n`);
  const f = (x: number | null, d = 2) => (x === null ? 'n/a' : x.toFixed(d));
  const lines = [
    `| streams | ms/token native | ms/token ${path.basename(o.routing)} | speed-up | saving | expert share (native) | ideal | gain vs ideal |`,
    '|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.streams} | ${f(r.msPerTokenNative)} | ${f(r.msPerTokenCandidate)} | ${f(r.speedup)}x | ${(r.saving * 100).toFixed(1)}% | ` +
        `${r.expertShareNative === null ? 'n/a' : `${(r.expertShareNative * 100).toFixed(1)}%`} | ${r.idealSpeedup === null ? 'n/a' : `${f(r.idealSpeedup)}x`} | ${f(r.gainVsIdeal)} |`,
    ),
  ];
  process.stdout.write(`${o.expertsDescription}\n${lines.join('\n')}\nwrote ${o.out}\n`);
  return 0;
}
