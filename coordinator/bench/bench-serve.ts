// `kmoe bench serve`: a load generator against a running `kmoe serve`. For each concurrency level
// it runs the same streamed requests under each routing policy (native top-K first, as the
// baseline) and reports output tokens/s, time to first token and inter-token latency, as JSON, an
// SVG chart and a markdown table with ratios against the baseline. With a second server
// (`versusUrl`, e.g. the same model with its experts in workers) every run is made on both,
// interleaved, and each policy is also compared across the two servers.

import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { profileDigest } from '../../shared/routing/profile.js';
import { isProfilePath } from '../../shared/routing/profile-names.js';
import { projectRoot } from '../../shared/runtime/entry-points.js';
import { machineInfo } from '../../shared/runtime/machine.js';
import { writeOutputFile } from '../../shared/runtime/output-file.js';
import { counted } from '../../shared/text/counted.js';
import { ServeRequestError } from '../server/errors.js';
import { type StreamTiming, streamCompletion } from './bench-serve-client.js';
import { type LineChartSpec, renderLineCharts } from './report/chart.js';
import { median, quantile } from './report/quantiles.js';

export interface BenchServeOptions {
  readonly url: string;
  /** A second server of the same model, measured in the same rounds. */
  readonly versusUrl?: string;
  readonly concurrency: readonly number[];
  /** Requests per run; default 2 x concurrency, at least 8. */
  readonly requests?: number;
  readonly maxTokens: number;
  readonly promptChars: number;
  /** Policies, the first being the baseline (default: native top-K and entropy:1,2@1.04). */
  readonly routing?: readonly string[];
  readonly out: string;
  readonly chart: string;
  readonly repeats: number;
  /** Per request, seconds. */
  readonly timeout: number;
}

export interface Policy {
  readonly label: string;
  readonly routing: string | object;
  /** The server it runs on (the --url one unless it is the versus copy of a policy). */
  readonly url?: string;
  /** For a profile file: profileDigest of its text (what a server that loaded it reports). */
  readonly digest?: string;
  /** How the profile goes to the server: by the name of the copy it loaded, or inline. */
  readonly sentAs?: 'name' | 'inline';
}

/** The label suffix of a policy run on the --versus-url server. */
const VERSUS = ' @versus';

interface LevelResult {
  readonly routing: string;
  readonly concurrency: number;
  readonly runs: number;
  /** Requests over all runs. */
  readonly requests: number;
  readonly errors: string[];
  readonly completionTokens: number;
  /** Median over runs of (tokens generated / wall time of the run). */
  readonly outputTokensPerSecond: number;
  readonly outputTokensPerSecondRuns: number[];
  readonly ttftMs: { readonly p50: number; readonly p99: number };
  readonly itlMs: { readonly p50: number; readonly p99: number };
  /** Experts per token per layer over the level's requests, from the usage extension. */
  readonly avgK: number;
}

export async function run(o: BenchServeOptions, argv: readonly string[]): Promise<number> {
  const url = o.url.replace(/\/+$/, '');
  const levels = o.concurrency;
  const fixedRequests = o.requests;
  const { maxTokens, promptChars, repeats, out } = o;
  const timeoutMs = o.timeout * 1000;
  const chartPath = o.chart;

  const server = await describeServer(url);
  const versusUrl = o.versusUrl?.replace(/\/+$/, '');
  const versus = versusUrl === undefined ? undefined : await describeServer(versusUrl, '--versus-url');
  if (versus !== undefined && (versus.model !== server.model || versus.nativeK !== server.nativeK))
    throw new ServeRequestError(
      `--versus-url serves ${versus.model} (native K ${versus.nativeK}), --url ${server.model} (native K ${server.nativeK})`,
      {
        hint: 'compare two servers of one model (e.g. kmoe serve --workers 0 and --workers 2 on the same --model)',
      },
    );
  // Other work on the machine moves absolute numbers; the load averages say how much there was.
  const loadAtStart = os.loadavg();
  const chosen = (o.routing ?? [`topk:${server.nativeK}`, 'entropy:1,2@1.04']).map(policy);
  const labels = chosen.map((p) => p.label);
  const twice = labels.find((l, i) => labels.indexOf(l) !== i);
  if (twice !== undefined)
    throw new ServeRequestError(`two policies are both labelled ${twice}`, {
      hint: 'give profile files distinct file names (the label of a profile is its file name)',
    });
  // With a second server each policy runs on both; the copies are told apart by their label. A
  // profile is named on both or on neither, so both sides pay the same for it.
  const policies = chosen.flatMap((pol) => {
    if (versusUrl === undefined) return [sendTo(pol, server)];
    const copy = { ...pol, label: `${pol.label}${VERSUS}`, url: versusUrl };
    const [a, b] = [sendTo(pol, server), sendTo(copy, versus!)];
    return a.sentAs === b.sentAs ? [a, b] : [inline(pol), inline(copy)];
  });
  for (const pol of policies.filter((p) => p.sentAs !== undefined))
    process.stderr.write(
      `bench serve: ${pol.label}: ${pol.sentAs === 'name' ? `named ${pol.routing as string} (${pol.url ?? url} loaded the same profile)` : 'sent inline with every request (not loaded by every server it runs on)'}\n`,
    );
  const requestsFor = (c: number) => fixedRequests ?? Math.max(8, 2 * c);
  const prompts = evalPrompts(Math.max(...levels.map(requestsFor)), promptChars);

  // Warm-up, not measured: the server resolves each policy once and its first steps (JIT,
  // onnxruntime arenas) are slower; without this the first policy measured would pay for it.
  for (const pol of policies) {
    for (const prompt of prompts.slice(0, 2)) {
      await streamCompletion({
        url: pol.url ?? url,
        model: server.model,
        prompt,
        maxTokens,
        routing: pol.routing,
        timeoutMs,
      });
    }
  }
  const results: LevelResult[] = [];
  for (const concurrency of levels) {
    const runs = new Map<string, Run[]>(policies.map((pol) => [pol.label, []]));
    for (let r = 0; r < repeats; r++) {
      // Alternate the order so neither policy always runs first (or always after the other).
      for (const pol of r % 2 === 0 ? policies : [...policies].reverse()) {
        process.stderr.write(
          `bench serve: concurrency ${concurrency}, ${pol.label}, run ${r + 1}/${repeats}\n`,
        );
        runs
          .get(pol.label)!
          .push(
            await runLoad(
              { url: pol.url ?? url, model: server.model, maxTokens, timeoutMs, routing: pol.routing },
              concurrency,
              prompts.slice(0, requestsFor(concurrency)),
            ),
          );
      }
    }
    for (const pol of policies)
      results.push(summarize(pol.label, concurrency, runs.get(pol.label)!, server.nativeK));
  }

  const baseline = policies[0]!.label;
  const ratios = results
    .filter((r) => r.routing !== baseline)
    .map((r) => {
      const base = results.find((b) => b.routing === baseline && b.concurrency === r.concurrency)!;
      return {
        routing: r.routing,
        concurrency: r.concurrency,
        throughputVsBaseline: r.outputTokensPerSecond / base.outputTokensPerSecond,
        ttftP50VsBaseline: r.ttftMs.p50 / base.ttftMs.p50,
        itlP50VsBaseline: r.itlMs.p50 / base.itlMs.p50,
      };
    });
  // Each policy on the second server vs the same policy on the first, level by level.
  const versusRatios =
    versus === undefined
      ? undefined
      : results
          .filter((r) => r.routing.endsWith(VERSUS))
          .map((r) => {
            const label = r.routing.slice(0, -VERSUS.length);
            const base = results.find((b) => b.routing === label && b.concurrency === r.concurrency)!;
            const perRun = r.outputTokensPerSecondRuns.map((v, i) => v / base.outputTokensPerSecondRuns[i]!);
            return {
              routing: label,
              concurrency: r.concurrency,
              /** Median over runs of run i on the second server / run i on the first (adjacent in time). */
              throughputVersusOverUrl: median(perRun),
              throughputRatioRuns: perRun,
              /** Median tokens/s on the second server / median on the first. */
              throughputMediansRatio: r.outputTokensPerSecond / base.outputTokensPerSecond,
              itlP50VersusOverUrl: r.itlMs.p50 / base.itlMs.p50,
            };
          });
  const report = {
    benchmark: 'serve',
    command: `kmoe bench serve ${argv.join(' ')}`.trim(),
    machine: machineInfo(),
    loadAverage1m: { start: loadAtStart[0], end: os.loadavg()[0] },
    server,
    ...(versus === undefined ? {} : { versus: { url: versusUrl, ...versus }, versusRatios }),
    maxTokens,
    promptChars,
    repeats,
    baseline,
    profilesSent: Object.fromEntries(
      policies.filter((p) => p.sentAs !== undefined).map((p) => [p.label, p.sentAs]),
    ),
    results,
    ratios,
  };
  writeOutputFile(out, `${JSON.stringify(report, null, 2)}\n`);
  writeOutputFile(chartPath, await chart(results, policies, server.model));
  const versusTable =
    versusRatios === undefined
      ? ''
      : [
          '',
          `${server.experts}  vs  ${versus!.experts} (@versus):`,
          '| concurrency | routing | @versus / --url tok/s (median of the per-run ratios) | per run | ITL p50 @versus / --url |',
          '|---|---|---|---|---|',
          ...versusRatios.map(
            (v) =>
              `| ${v.concurrency} | ${v.routing} | ${v.throughputVersusOverUrl.toFixed(2)}x | ${v.throughputRatioRuns.map((x) => x.toFixed(2)).join(', ')} | ${v.itlP50VersusOverUrl.toFixed(2)}x |`,
          ),
        ].join('\n');
  process.stdout.write(`${table(results, baseline)}${versusTable}\nwrote ${out} and ${chartPath}\n`);
  const failed = results.reduce((n, r) => n + r.errors.length, 0);
  if (failed > 0)
    process.stderr.write(`bench serve: ${counted(failed, 'request')} failed; see "errors" in ${out}\n`);
  return failed > 0 ? 1 : 0;
}

export interface ServerDescription {
  readonly model: string;
  readonly nativeK: number;
  readonly numLayers: number;
  readonly experts: string;
  /** Routing profiles the server loaded (--routing / --profiles), as it names them, with their digests. */
  readonly profiles: Readonly<Record<string, string>>;
}

export async function describeServer(url: string, flag = '--url'): Promise<ServerDescription> {
  const get = async (p: string): Promise<unknown> => {
    const res = await fetch(`${url}${p}`, { signal: AbortSignal.timeout(10_000) }).catch((err: unknown) => {
      throw new ServeRequestError(
        `cannot reach ${url}${p}: ${err instanceof Error ? err.message : String(err)}`,
        { hint: `is kmoe serve running there? start it with kmoe serve --model DIR, or give ${flag}` },
      );
    });
    if (!res.ok) throw new ServeRequestError(`GET ${url}${p}: HTTP ${res.status}`);
    return res.json();
  };
  const models = (await get('/v1/models')) as {
    data?: {
      id: string;
      kmoe?: {
        native_k: number;
        num_layers: number;
        num_moe_layers?: number;
        profile_digests?: Record<string, string>;
      };
    }[];
  };
  const model = models.data?.[0];
  if (!model?.kmoe)
    throw new ServeRequestError(`${url} is not a kmoe server (no kmoe section in /v1/models)`);
  const ready = (await get('/ready')) as { experts?: { description?: string } };
  return {
    model: model.id,
    nativeK: model.kmoe.native_k,
    // MoE layers (servers before families reported num_layers only, all MoE).
    numLayers: model.kmoe.num_moe_layers ?? model.kmoe.num_layers,
    experts: ready.experts?.description ?? 'unknown',
    // Servers before digests: no profile is named, every one is sent inline.
    profiles: model.kmoe.profile_digests ?? {},
  };
}

/**
 * A profile policy as one server gets it: by name when the server loaded the same profile (same
 * digest of its canonical JSON; a multi-MB substitute profile sent with every request would time
 * the upload and the validation, ~50 ms per request here), else inline.
 */
function inline(pol: Policy): Policy {
  return pol.digest === undefined ? pol : { ...pol, sentAs: 'inline' };
}

function sendTo(pol: Policy, server: ServerDescription): Policy {
  if (pol.digest === undefined) return pol;
  const same = Object.entries(server.profiles).find(([, d]) => d === pol.digest);
  return same ? { ...pol, routing: same[0], sentAs: 'name' } : inline(pol);
}

export function policy(arg: string): Policy {
  if (!isProfilePath(arg)) return { label: arg, routing: arg };
  // Inline unless the server loaded a profile of the same name (sendTo), so it needs no copy.
  const text = readFileSync(arg, 'utf8');
  return { label: path.basename(arg), routing: JSON.parse(text) as object, digest: profileDigest(text) };
}

/** Slices of the eval corpora, alternating docs and code, starting at line boundaries. */
export function evalPrompts(count: number, chars: number): string[] {
  const root = projectRoot();
  const sources = ['valid.docs.txt', 'valid.code.txt'].map((f) =>
    readFileSync(path.join(root, 'data/eval', f), 'utf8'),
  );
  return Array.from({ length: count }, (_, i) => {
    const text = sources[i % 2]!;
    // Spread over the corpus with a stride co-prime to typical file lengths.
    const at = (i * 104_729) % Math.max(1, text.length - chars);
    const start = text.indexOf('\n', at) + 1;
    return text.slice(start, start + chars);
  });
}

/** One pass of a level: its requests with `concurrency` in flight. */
export interface Run {
  readonly timings: StreamTiming[];
  readonly errors: string[];
  readonly wallSeconds: number;
}

export async function runLoad(
  base: { url: string; model: string; maxTokens: number; timeoutMs: number; routing: string | object },
  concurrency: number,
  prompts: readonly string[],
): Promise<Run> {
  const timings: StreamTiming[] = [];
  const errors: string[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < prompts.length) {
        const prompt = prompts[next++]!;
        try {
          timings.push(await streamCompletion({ ...base, prompt }));
        } catch (err) {
          errors.push(err instanceof Error ? err.message : String(err));
        }
      }
    }),
  );
  if (timings.length === 0) throw new ServeRequestError(`every request failed; first error: ${errors[0]}`);
  return { timings, errors, wallSeconds: (Math.max(...timings.map((t) => t.endedAt)) - started) / 1000 };
}

/** Throughput is the median over runs; latency quantiles pool every request of every run. */
function summarize(routing: string, concurrency: number, runs: readonly Run[], nativeK: number): LevelResult {
  const timings = runs.flatMap((r) => r.timings);
  const ttft = timings.map((t) => t.ttftMs);
  const gaps = timings.flatMap((t) => t.gapsMs);
  const activations = timings.reduce((a, t) => a + t.activations, 0);
  const native = timings.reduce((a, t) => a + t.nativeActivations, 0);
  const rates = runs.map((r) => r.timings.reduce((a, t) => a + t.completionTokens, 0) / r.wallSeconds);
  return {
    routing,
    concurrency,
    runs: runs.length,
    requests: timings.length + runs.reduce((a, r) => a + r.errors.length, 0),
    errors: runs.flatMap((r) => r.errors),
    completionTokens: timings.reduce((a, t) => a + t.completionTokens, 0),
    outputTokensPerSecond: median(rates),
    outputTokensPerSecondRuns: rates,
    ttftMs: { p50: quantile(ttft, 0.5), p99: quantile(ttft, 0.99) },
    itlMs: gaps.length === 0 ? { p50: 0, p99: 0 } : { p50: quantile(gaps, 0.5), p99: quantile(gaps, 0.99) },
    avgK: native === 0 ? 0 : (activations / native) * nativeK,
  };
}

const PANEL = { width: 720, height: 400 } as const;

/** Three panels stacked in one SVG: throughput, time to first token, inter-token latency. */
function chart(results: readonly LevelResult[], policies: readonly Policy[], model: string): Promise<string> {
  const of = (pol: Policy) => results.filter((r) => r.routing === pol.label);
  const latency = (title: string, pick: (r: LevelResult) => { p50: number; p99: number }): LineChartSpec => ({
    ...PANEL,
    title,
    xLabel: 'concurrent streams',
    yLabel: 'milliseconds (p50 solid, p99 dashed)',
    xLog: true,
    yLog: true,
    series: policies.flatMap((pol) => [
      { name: `${pol.label} p50`, points: of(pol).map((r) => ({ x: r.concurrency, y: pick(r).p50 })) },
      {
        name: `${pol.label} p99`,
        dashed: true,
        points: of(pol).map((r) => ({ x: r.concurrency, y: pick(r).p99 })),
      },
    ]),
  });
  // One SVG document, the three panels one under the other.
  return renderLineCharts([
    {
      ...PANEL,
      title: `kmoe serve (${model}): output tokens/s`,
      xLabel: 'concurrent streams',
      yLabel: 'output tokens / s (median of runs)',
      xLog: true,
      series: policies.map((pol) => ({
        name: pol.label,
        points: of(pol).map((r) => ({
          x: r.concurrency,
          y: r.outputTokensPerSecond,
          label: `K ${r.avgK.toFixed(2)}`,
        })),
      })),
    },
    latency('time to first token', (r) => r.ttftMs),
    latency('inter-token latency', (r) => r.itlMs),
  ]);
}

function table(results: readonly LevelResult[], baseline: string): string {
  const f = (v: number, d = 1) => v.toFixed(d);
  const rows = results.map((r) => {
    const base = results.find((b) => b.routing === baseline && b.concurrency === r.concurrency)!;
    const ratio =
      r.routing === baseline ? '1.00x' : `${f(r.outputTokensPerSecond / base.outputTokensPerSecond, 2)}x`;
    return `| ${r.concurrency} | ${r.routing} | ${f(r.avgK, 2)} | ${f(r.outputTokensPerSecond, 0)} | ${ratio} | ${f(r.ttftMs.p50)} | ${f(r.ttftMs.p99)} | ${f(r.itlMs.p50, 2)} | ${f(r.itlMs.p99, 2)} |`;
  });
  return [
    '| concurrency | routing | avg K | output tok/s | vs baseline | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
