// `kmoe cluster rebalance` end to end with a real redis-server, worker processes and a coordinator:
// under a stream of concurrent greedy requests, workers load new replicas and unload experts while
// serving; no request fails and every text equals the fault-free one; the coordinator routes to a
// newly loaded expert; the registry and `cluster status` show the new placement and the load per
// (layer, expert); a rebalance with no traffic, or while another holds the lock, fails clearly.

import { spawn } from 'node:child_process';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  expertQueueName,
  jobConnection,
  jobPrefix,
} from '../../../../shared/cluster-registry/expert-jobs.js';
import { runCli } from '../../../helpers/cli.js';
import { KMOE_ARGV, ROOT } from '../../../helpers/paths.js';
import { type RedisServer, startRedis } from '../../../helpers/redis-server.js';
import { requestLoops } from '../../../helpers/request-loops.js';
import { startWorker, type WorkerProcess } from '../../../helpers/worker-process.js';
import { type ServeProcess, startServe } from '../../server/serve-process.js';

interface StatusJson {
  workers: { id: string; url: string; experts: number[]; heartbeatAgeMs: number }[];
  models: {
    covered: boolean;
    experts: { expert: number; replicas: number }[];
    layers: { layer: number; expert: number; pairsPerSec: number }[];
  }[];
}

interface ReportJson {
  outcome: 'applied' | 'planned' | 'balanced';
  before: { max: number; imbalance: number };
  after: { max: number; imbalance: number };
  replicas: number[];
  target: Record<string, number[]>;
  applied: { id: string; op: 'load' | 'unload'; experts: number[]; holds: number[] }[];
  layerLoad: { layer: number; expert: number; pairsPerSec: number }[];
}

let redis: RedisServer;
const workers: WorkerProcess[] = [];
let server: ServeProcess;

const PROMPTS = ['def fib(n):', 'The man page of ls', 'import numpy as np'];
const MAX_TOKENS = 8;

async function complete(prompt: string): Promise<string> {
  const res = await fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny-mixtral', prompt, max_tokens: MAX_TOKENS, temperature: 0 }),
  });
  const body = (await res.json()) as { choices?: { text: string }[] };
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${JSON.stringify(body)}`);
  return body.choices![0]!.text;
}

/** Requests from `concurrency` loops (cycling through PROMPTS) until `until` settles. */
async function stream(concurrency: number, until: Promise<unknown>) {
  const { results, errors } = await requestLoops(concurrency, until, async (loop, k) => {
    const prompt = PROMPTS[(loop + k) % PROMPTS.length]!;
    return { prompt, text: await complete(prompt) };
  });
  return { texts: results, errors };
}

/** `kmoe cluster rebalance --redis URL ARGS --json`: exit 0 and its last report. */
async function rebalanceJson(args: readonly string[]): Promise<{ report: ReportJson; stderr: string }> {
  // A command that does not finish fails within a minute, with the workers' logs to say where.
  const r = await runCli([
    'cluster',
    'rebalance',
    '--redis',
    redis.url,
    ...args,
    '--command-timeout',
    '60',
    '--json',
  ]);
  if (r.code !== 0)
    for (const w of workers)
      console.log(`--- worker ${w.url}\n${w.stderr().split('\n').slice(-20).join('\n')}`);
  expect(r.code, r.stderr).toBe(0);
  return { report: JSON.parse(r.stdout.trim().split('\n').at(-1)!) as ReportJson, stderr: r.stderr };
}

async function status(): Promise<StatusJson> {
  const r = await runCli(['cluster', 'status', '--redis', redis.url, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as StatusJson;
}

/** Token rows a worker computed per expert (all layers), from its /metrics. */
async function activations(w: WorkerProcess): Promise<Map<number, number>> {
  const text = await (await fetch(`${w.url.replace('ws://', 'http://')}/metrics`)).text();
  const per = new Map<number, number>();
  for (const m of text.matchAll(
    /^kmoe_worker_expert_token_activations_total\{layer="\d+",expert="(\d+)"\} (\d+)/gm,
  ))
    per.set(Number(m[1]), (per.get(Number(m[1])) ?? 0) + Number(m[2]));
  return per;
}

let baseline: Map<string, string>;
/** When the baseline requests had all been answered (Date.now()). */
let baselineDone = 0;

beforeAll(async () => {
  redis = await startRedis();
  // Expert 0-3 on a, 4-7 on b, and c with two of b's: slots 4 each give 4 spare slots.
  workers.push(
    ...(await Promise.all(['0-3', '4-7', '4-5'].map((e) => startWorker(e, ['--redis', redis.url])))),
  );
  server = await startServe(['--redis', redis.url, '--wire', 'fp32']);
  baseline = new Map();
  for (const p of PROMPTS) baseline.set(p, await complete(p));
  baselineDone = Date.now();
});

afterAll(async () => {
  await server?.stop();
  await Promise.all(workers.map((w) => w.stop()));
  await redis?.stop();
});

describe('kmoe cluster rebalance (real redis-server, workers and coordinator)', () => {
  it('with no traffic there is nothing to balance: exit 1 with a hint', async () => {
    // Past the heartbeats that still counted the baseline requests (polled: on a loaded machine
    // they come late). Only heartbeats sent after the baseline ended count: an earlier one says
    // "no traffic" because the traffic had not happened yet, and the next would report it.
    for (const deadline = Date.now() + 30_000; ; ) {
      const asked = Date.now();
      const s = await status();
      const fresh = s.workers.every((w) => w.heartbeatAgeMs < asked - baselineDone);
      if (fresh && s.models.every((m) => m.layers.every((l) => l.pairsPerSec === 0))) break;
      if (Date.now() > deadline) throw new Error(`workers still report traffic: ${JSON.stringify(s.models)}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const r = await runCli(['cluster', 'rebalance', '--redis', redis.url, '--window', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('reported no traffic during the window');
  });

  it('another rebalance holding the lock: refused, nothing changed', async () => {
    const client = new Redis(redis.url);
    try {
      await client.set('kmoe:lock:rebalance', 'someone-else', 'PX', 60_000);
      const r = await runCli(['cluster', 'rebalance', '--redis', redis.url, '--window', '1']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('another kmoe cluster rebalance is running');
    } finally {
      await client.del('kmoe:lock:rebalance');
      client.disconnect();
    }
  });

  it('--slots 4 under load: hot experts get replicas, no request fails, texts unchanged', async () => {
    const before = new Map(
      await Promise.all(workers.map(async (w) => [w.url, await activations(w)] as const)),
    );
    let report: ReportJson | undefined;
    let stderr = '';
    const rebalanced = (async () => {
      ({ report, stderr } = await rebalanceJson(['--slots', '4', '--window', '3', '--min-gain', '0']));
      // Keep the stream going a little so the new placement serves requests too.
      await new Promise((resolve) => setTimeout(resolve, 1500));
    })();
    const { texts, errors } = await stream(4, rebalanced);
    await rebalanced;
    expect(errors).toEqual([]);
    expect(texts.length).toBeGreaterThan(0);
    for (const t of texts) expect(t.text).toBe(baseline.get(t.prompt));

    expect(report!.outcome).toBe('applied');
    // 12 slots for 8 experts: every expert at least once, 12 replicas in all, at most one per worker.
    expect(report!.replicas.reduce((a, b) => a + b, 0)).toBe(12);
    expect(report!.replicas.every((n) => n >= 1 && n <= 3)).toBe(true);
    expect(report!.after.max).toBeLessThanOrEqual(report!.before.max);
    // The load was measured per (layer, expert) from the workers' heartbeats.
    expect(report!.layerLoad.length).toBeGreaterThan(0);
    expect(report!.layerLoad.every((l) => l.pairsPerSec > 0 && l.expert < 8)).toBe(true);
    const loads = report!.applied.filter((a) => a.op === 'load');
    expect(loads.length).toBeGreaterThan(0);
    expect(stderr).toContain('loading');

    // The registry shows the target placement.
    const s = await status();
    for (const w of s.workers) expect(w.experts).toEqual(report!.target[w.id]);
    expect(s.models[0]!.covered).toBe(true);
    expect(s.models[0]!.experts.map((e) => e.replicas)).toEqual(report!.replicas);

    // Some worker computed an expert it did not hold before the rebalance: the coordinator routed
    // to the new replica without a restart.
    const urlOf = (id: string) => s.workers.find((w) => w.id === id)!.url;
    let routedToNew = false;
    for (const l of loads) {
      const w = workers.find((x) => x.url === urlOf(l.id))!;
      const now = await activations(w);
      for (const e of l.experts) if ((now.get(e) ?? 0) > (before.get(w.url)!.get(e) ?? 0)) routedToNew = true;
      expect(w.stderr()).toContain('rebalance: loading experts');
    }
    expect(routedToNew).toBe(true);
  });

  it('--dry-run under load plans and reports, changing nothing', async () => {
    // Every worker holds 4 experts now (the test above): --slots 3 must shed one from each, so a
    // plan exists whatever the measured load (with spare slots, a greedy plan that would not lower
    // the busiest worker's load is reported as balanced instead, and the window's load decides).
    const held = (await status()).workers.map((w) => w.experts);
    expect(held.every((e) => e.length === 4)).toBe(true);
    let report: ReportJson | undefined;
    const planned = (async () => {
      // Traffic first, so every heartbeat of the window carries load.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      ({ report } = await rebalanceJson(['--slots', '3', '--window', '3', '--min-gain', '0', '--dry-run']));
    })();
    const { errors } = await stream(2, planned);
    await planned;
    expect(errors).toEqual([]);
    expect(report!.outcome).toBe('planned');
    expect(report!.applied).toEqual([]);
    expect(report!.replicas.reduce((a, b) => a + b, 0)).toBe(9);
    expect((await status()).workers.map((w) => w.experts)).toEqual(held);
  });

  it('--slots 3 under load: workers unload experts they give up, no request fails', async () => {
    let report: ReportJson | undefined;
    const rebalanced = (async () => {
      ({ report } = await rebalanceJson(['--slots', '3', '--window', '3', '--min-gain', '0']));
      await new Promise((resolve) => setTimeout(resolve, 1500));
    })();
    const { texts, errors } = await stream(4, rebalanced);
    await rebalanced;
    expect(errors).toEqual([]);
    for (const t of texts) expect(t.text).toBe(baseline.get(t.prompt));
    expect(report!.outcome).toBe('applied');
    expect(report!.applied.some((a) => a.op === 'unload')).toBe(true);
    const s = await status();
    for (const w of s.workers) expect(w.experts.length).toBeLessThanOrEqual(3);
    expect(s.models[0]!.covered).toBe(true);
    // Still serving the same texts afterwards.
    for (const p of PROMPTS) expect(await complete(p)).toBe(baseline.get(p));
    const readyz = await fetch(`${server.url}/ready`);
    expect(readyz.status).toBe(200);
  });

  it('--watch (automatic mode): rounds report until SIGTERM, then exit 0', async () => {
    const child = spawn(
      process.execPath,
      [
        ...KMOE_ARGV,
        'cluster',
        'rebalance',
        '--redis',
        redis.url,
        '--watch',
        '5',
        '--window',
        '1',
        '--min-gain',
        '0.99',
        '--json',
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // Under load, a round measures traffic; with --min-gain 0.99 it changes nothing.
    const firstRound = (async () => {
      const deadline = Date.now() + 30_000;
      while (!stdout.includes('\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    })();
    const { errors } = await stream(2, firstRound);
    expect(errors).toEqual([]);
    const report = JSON.parse(stdout.trim().split('\n')[0]!) as ReportJson;
    expect(report.outcome).toBe('balanced');
    child.kill('SIGTERM');
    expect(await exited, stderr).toBe(0);
  });

  it('a worker refuses a command to unload an expert no other ready worker holds', async () => {
    const s = await status();
    const sole = s.models[0]!.experts.find((e) => e.replicas === 1);
    expect(sole).toBeDefined();
    const holder = s.workers.find((w) => w.experts.includes(sole!.expert))!;
    const opts = { connection: jobConnection(redis.url), prefix: jobPrefix() };
    const queue = new Queue(expertQueueName(holder.id), opts);
    const events = new QueueEvents(expertQueueName(holder.id), opts);
    try {
      await events.waitUntilReady();
      const fingerprint = JSON.parse(
        (await runCli(['cluster', 'status', '--redis', redis.url, '--json'])).stdout,
      ).models[0].fingerprint as string;
      const job = await queue.add('unload', { op: 'unload', experts: [sole!.expert], fingerprint });
      await expect(job.waitUntilFinished(events, 30_000)).rejects.toThrow(
        new RegExp(`refusing to unload experts ${sole!.expert}: no other ready worker holds them`),
      );
      // Still held and still served.
      expect((await status()).workers.find((w) => w.id === holder.id)!.experts).toContain(sole!.expert);
      for (const p of PROMPTS) expect(await complete(p)).toBe(baseline.get(p));
    } finally {
      await events.close();
      await queue.close();
    }
  });
});
