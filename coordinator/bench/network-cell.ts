// One rate of `kmoe bench network`, run inside the coordinator's network namespace (started by
// deploy/netns/kmoe-netns.sh as its coordinator command): starts `kmoe serve` against the workers
// of the other namespaces, runs the same streamed load under each routing, interleaved, and records
// per run what the client saw, what the coordinator dispatched (/metrics) and what crossed the
// namespace's link (eth0 counters of /proc/net/dev, which shows the caller's own namespace).

import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { z } from 'zod';
import { cliArgv, projectRoot } from '../../shared/runtime/entry-points.js';
import { counted } from '../../shared/text/counted.js';
import { describeServer, evalPrompts, policy, runLoad, type ServerDescription } from './bench-serve.js';
import type { StreamTiming } from './bench-serve-client.js';
import { BenchConfigError } from './errors.js';
import { sumMetric } from './prometheus-text.js';

/** What the driver hands the cell (a JSON file: the cell runs as another process). */
export interface NetworkCellSpec {
  readonly model: string;
  /** ws:// URLs of the workers in their namespaces. */
  readonly workerUrls: readonly string[];
  readonly tokenFile: string;
  readonly wire: string;
  readonly threads?: number;
  /** kmoe serve --overlap: two micro-batches, one computing while the other waits for its experts. */
  readonly overlap?: boolean;
  /** Routing specs or profile paths; default: native top-K, then topk:1. */
  readonly routing?: readonly string[];
  readonly streams: readonly number[];
  readonly requests?: number;
  readonly maxTokens: number;
  readonly promptChars: number;
  readonly repeats: number;
  readonly timeoutSeconds: number;
  /** Where the cell writes its NetworkCellResult. */
  readonly out: string;
}

/** One load run: `streams` requests in flight until `requests` are done, under one routing. */
export interface NetworkRun {
  readonly routing: string;
  readonly streams: number;
  readonly repeat: number;
  readonly wallSeconds: number;
  readonly timings: readonly StreamTiming[];
  readonly errors: readonly string[];
  /** Deltas over the run of the coordinator's counters. */
  readonly dispatchBytes: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Bytes through the coordinator namespace's link, both directions (frames as the veth counts them). */
  readonly linkBytes: number;
}

export interface NetworkCellResult {
  readonly server: ServerDescription;
  readonly routings: readonly string[];
  readonly runs: readonly NetworkRun[];
}

/** Counters of the coordinator's /metrics that a run's deltas are taken from. */
interface Counters {
  readonly dispatchBytes: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly linkBytes: number;
}

/** rx + tx bytes of `iface` in /proc/net/dev text (the reading process's network namespace). */
export function interfaceBytes(procNetDev: string, iface: string): number {
  for (const line of procNetDev.split('\n')) {
    const [name, rest] = line.split(':');
    if (name?.trim() !== iface || rest === undefined) continue;
    const f = rest.trim().split(/\s+/).map(Number);
    // Receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes ...
    return f[0]! + f[8]!;
  }
  throw new BenchConfigError(`no interface ${iface} in /proc/net/dev`, {
    hint: 'kmoe bench network-cell runs inside the coordinator namespace of deploy/netns/kmoe-netns.sh',
  });
}

async function counters(url: string): Promise<Counters> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  return {
    dispatchBytes: sumMetric(text, 'kmoe_dispatch_bytes_total'),
    promptTokens: sumMetric(text, 'kmoe_prompt_tokens_total'),
    completionTokens: sumMetric(text, 'kmoe_completion_tokens_total'),
    linkBytes: interfaceBytes(readFileSync('/proc/net/dev', 'utf8'), 'eth0'),
  };
}

/** Starts `kmoe serve` on a free loopback port of this namespace; resolves with its URL. */
function startServe(spec: NetworkCellSpec): Promise<{ url: string; child: ChildProcess }> {
  const args = [
    ...cliArgv(),
    'serve',
    '--model',
    spec.model,
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--workers',
    spec.workerUrls.join(','),
    '--cluster-token-file',
    spec.tokenFile,
    '--wire',
    spec.wire,
    '--max-running',
    String(Math.max(16, ...spec.streams)),
    '--log-level',
    'warn',
    ...(spec.threads === undefined ? [] : ['--threads', String(spec.threads)]),
    ...(spec.overlap ? ['--overlap'] : []),
  ];
  const child = spawn(process.execPath, args, {
    cwd: projectRoot(),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /kmoe serve listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ url: m[1]!, child });
    });
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      reject(new BenchConfigError(`kmoe serve exited (${signal ?? code}) before listening`)),
    );
  });
}

export async function runCell(spec: NetworkCellSpec): Promise<NetworkCellResult> {
  const { url, child } = await startServe(spec);
  try {
    const server = await describeServer(url);
    const policies = (spec.routing ?? [`topk:${server.nativeK}`, 'topk:1']).map(policy);
    const requestsFor = (s: number) => spec.requests ?? Math.max(8, 2 * s);
    const prompts = evalPrompts(Math.max(...spec.streams.map(requestsFor)), spec.promptChars);
    const base = {
      url,
      model: server.model,
      maxTokens: spec.maxTokens,
      timeoutMs: spec.timeoutSeconds * 1000,
    };
    // Warm-up, not measured (first steps of each policy: JIT, onnxruntime arenas, connections).
    for (const pol of policies) await runLoad({ ...base, routing: pol.routing }, 1, prompts.slice(0, 1));
    const runs: NetworkRun[] = [];
    for (const streams of spec.streams) {
      for (let r = 0; r < spec.repeats; r++) {
        // Alternate the order so neither routing always runs first.
        for (const pol of r % 2 === 0 ? policies : [...policies].reverse()) {
          process.stderr.write(
            `bench network: ${process.env['KMOE_NETNS_RATE'] ?? '?'}, ${counted(streams, 'stream')}, ${pol.label}, run ${r + 1}/${spec.repeats}\n`,
          );
          const before = await counters(url);
          const load = await runLoad(
            { ...base, routing: pol.routing },
            streams,
            prompts.slice(0, requestsFor(streams)),
          );
          const after = await counters(url);
          runs.push({
            routing: pol.label,
            streams,
            repeat: r,
            wallSeconds: load.wallSeconds,
            timings: load.timings,
            errors: load.errors,
            dispatchBytes: after.dispatchBytes - before.dispatchBytes,
            promptTokens: after.promptTokens - before.promptTokens,
            completionTokens: after.completionTokens - before.completionTokens,
            linkBytes: after.linkBytes - before.linkBytes,
          });
        }
      }
    }
    const result = { server, routings: policies.map((p) => p.label), runs };
    await fs.writeFile(spec.out, `${JSON.stringify(result)}\n`);
    return result;
  } finally {
    const exited = new Promise((res) => child.once('exit', res));
    child.kill('SIGTERM');
    // Unref'd: a pending timer must not keep this process alive after serve has exited.
    await Promise.race([exited, new Promise((res) => setTimeout(res, 15_000).unref())]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

const specSchema = z.object({
  model: z.string(),
  workerUrls: z.array(z.string().regex(/^wss?:\/\//)).min(1),
  tokenFile: z.string(),
  wire: z.string(),
  threads: z.number().int().positive().optional(),
  overlap: z.boolean().optional(),
  routing: z.array(z.string()).min(2).optional(),
  streams: z.array(z.number().int().positive()).min(1),
  requests: z.number().int().positive().optional(),
  maxTokens: z.number().int().positive(),
  promptChars: z.number().int().positive(),
  repeats: z.number().int().positive(),
  timeoutSeconds: z.number().positive(),
  out: z.string(),
});

/** The `kmoe bench network-cell --spec FILE` entry: reads the spec the driver wrote. */
export async function run(o: { spec: string }): Promise<number> {
  const parsed = specSchema.safeParse(JSON.parse(await fs.readFile(o.spec, 'utf8')));
  if (!parsed.success)
    throw new BenchConfigError(`${o.spec} is not a bench network cell spec: ${parsed.error.message}`);
  const spec: NetworkCellSpec = parsed.data;
  const result = await runCell(spec);
  const failed = result.runs.reduce((n, r) => n + r.errors.length, 0);
  return failed > 0 ? 1 : 0;
}
