// `kmoe local-cluster`, and `kmoe eval` / `kmoe generate` with --workers, as a user runs them:
// real processes on loopback, always stopped.

import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmoeTokenizer } from '../../../shared/model/tokenizer.js';
import { lastJsonLine, runCli } from '../../helpers/cli.js';
import { greedyCases, KMOE_ARGV, MODEL_DIR, ROOT, referenceGreedyText } from '../../helpers/paths.js';

interface Cluster {
  child: ChildProcess;
  urls: string;
  pids: number[];
  stderr: () => string;
  exit: Promise<number | null>;
}

function startCluster(workers: number): Promise<Cluster> {
  const child = spawn(
    process.execPath,
    [...KMOE_ARGV, 'local-cluster', '--model', MODEL_DIR, '--workers', String(workers)],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const pids: number[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`local-cluster not ready; stderr:\n${stderr}`)), 60_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const pid = /^worker \d+ ws:\/\/\S+ experts \S+ pid (\d+)$/.exec(line);
      if (pid) pids.push(Number(pid[1]));
      const ready = /^kmoe local-cluster ready (\S+)$/.exec(line);
      if (ready) {
        clearTimeout(timer);
        resolve({ child, urls: ready[1]!, pids, stderr: () => stderr, exit });
      }
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('kmoe local-cluster with eval and generate', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster(2);
  });
  afterAll(() => {
    if (cluster?.child.exitCode === null) cluster.child.kill('SIGKILL');
  });

  it('starts two workers with the experts split evenly', () => {
    expect(cluster.urls.split(',')).toHaveLength(2);
    expect(cluster.pids).toHaveLength(2);
    // One pino JSON stream: each worker's records re-emitted with the worker's index.
    const records = cluster
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { component: string; worker?: number; msg: string });
    const loading = (worker: number) =>
      records.find((r) => r.worker === worker && r.msg.startsWith('loading experts'))?.msg;
    expect(loading(0)).toMatch(/^loading experts 0-3 of 8/);
    expect(loading(1)).toMatch(/^loading experts 4-7 of 8/);
    expect(records.every((r) => r.component === 'kmoe-local-cluster')).toBe(true);
  });

  it('kmoe eval --workers reports bytes per token per MoE layer against native top-K', async () => {
    const r = await runCli([
      'eval',
      '--model',
      MODEL_DIR,
      '--ids',
      'data/eval/valid.code.u16',
      '--windows',
      '0:8',
      '--workers',
      cluster.urls,
      '--wire',
      'bf16',
      '--json',
    ]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(
      /^network\s+\d+ bytes per token per MoE layer \(bf16 wire, 2 workers\): 1\.000x native/m,
    );
    const json = lastJsonLine(r.stdout);
    const d = json['dispatch'] as Record<string, unknown>;
    expect(d['wire']).toBe('bf16');
    expect(d['workers']).toBe(2);
    expect(d['tokenLayers']).toBe(8 * 256 * 4);
    expect(d['vsNative']).toBe(1);
    // bf16 hidden 256: 512 bytes each way per token visit, a visit per worker a token's experts use.
    const perToken = d['bytesPerTokenLayer'] as number;
    expect(perToken).toBeGreaterThan(1024);
    expect(perToken).toBeLessThan(2 * 1024 + 100);
    expect(json['perplexity']).toBeGreaterThan(5);
    // One request per worker per MoE layer of each forward pass, every one answered and timed.
    const perWorker = d['perWorker'] as { messages: number; meanRoundTripMs: number }[];
    for (const w of perWorker) {
      expect(w.messages).toBeGreaterThan(0);
      expect(w.messages % 4).toBe(0);
      expect(w.meanRoundTripMs).toBeGreaterThan(0);
    }
    expect(r.stderr).toMatch(/\(experts 0-3\): \d+ messages, .* mean round trip \d+\.\d\d ms$/m);
  });

  it('kmoe generate --workers streams the reference greedy continuation (fp32 wire)', async () => {
    const c = greedyCases().find((g) => g.name === 'code-fib')!;
    const tokenizer = await KmoeTokenizer.load(MODEL_DIR);
    const expected = referenceGreedyText(tokenizer, c);
    const r = await runCli([
      'generate',
      '--model',
      MODEL_DIR,
      '--prompt',
      c.prompt,
      '--max-tokens',
      '32',
      '--workers',
      cluster.urls,
      '--wire',
      'fp32',
      '--stats',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${expected}\n`);
    expect(r.stderr).toMatch(/network: \d+ bytes per token per MoE layer to 2 workers/);
  });

  it('stops its workers on SIGTERM and exits 0', async () => {
    cluster.child.kill('SIGTERM');
    expect(await cluster.exit).toBe(0);
    expect(cluster.pids.filter(alive)).toEqual([]);
  });
});

describe('kmoe local-cluster killed outright', () => {
  it('takes its workers with it', async () => {
    const cluster = await startCluster(2);
    expect(cluster.pids.filter(alive)).toHaveLength(2);
    cluster.child.kill('SIGKILL');
    await cluster.exit;
    const deadline = Date.now() + 15_000;
    while (cluster.pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(cluster.pids.filter(alive)).toEqual([]);
  });
});

describe('kmoe local-cluster when a worker dies', () => {
  it('reports it, stops the other worker and exits 1', async () => {
    const cluster = await startCluster(2);
    try {
      process.kill(cluster.pids[1]!, 'SIGKILL');
      expect(await cluster.exit).toBe(1);
      expect(cluster.stderr()).toMatch(/worker 1 \(ws:\/\/\S+\) exited \(SIGKILL\); stopping the others/);
      expect(cluster.pids.filter(alive)).toEqual([]);
    } finally {
      if (cluster.child.exitCode === null) cluster.child.kill('SIGKILL');
    }
  });
});

describe('--workers N on generate', () => {
  it('starts N local worker processes, streams the reference greedy text, and stops them', async () => {
    const c = greedyCases().find((g) => g.name === 'code-fib')!;
    const tokenizer = await KmoeTokenizer.load(MODEL_DIR);
    const expected = referenceGreedyText(tokenizer, { ...c, greedyIds: c.greedyIds.slice(0, 16) });
    const r = await runCli([
      'generate',
      '--model',
      MODEL_DIR,
      '--prompt',
      c.prompt,
      '--max-tokens',
      '16',
      '--workers',
      '2',
      '--wire',
      'fp32',
      '--stats',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${expected}\n`);
    // The workers' info lines (loading, listening) stay quiet; only warnings and errors are relayed.
    expect(r.stderr).not.toMatch(/\[worker \d\]/);
    expect(r.stderr).toMatch(/network: \d+ bytes per token per MoE layer to 2 workers/);
  });
});

describe('remote expert flags', () => {
  it.each([
    [['--wire', 'fp8', '--workers', 'ws://127.0.0.1:1'], /--wire must be one of fp32, fp16, bf16, got 'fp8'/],
    [['--wire', 'bf16'], /--wire needs --workers/],
    [
      ['--workers', 'http://127.0.0.1:1'],
      /--workers: 'http:\/\/127\.0\.0\.1:1' is neither a worker count nor a ws:\/\/ or wss:\/\/ URL/,
    ],
    [['--workers', '9'], /--workers 9 exceeds the model's 8 experts/],
  ])('reject %j with a usage error', async (flags, message) => {
    const r = await runCli(['eval', '--model', MODEL_DIR, '--ids', 'data/eval/valid.man.u16', ...flags]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  it('name an unreachable worker', async () => {
    const r = await runCli([
      'generate',
      '--model',
      MODEL_DIR,
      '--prompt',
      'x',
      '--workers',
      'ws://127.0.0.1:1',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: worker ws:\/\/127\.0\.0\.1:1: cannot connect/);
    expect(r.stderr).toMatch(/hint: /);
  });

  it('local-cluster rejects more workers than experts', async () => {
    const r = await runCli(['local-cluster', '--model', MODEL_DIR, '--workers', '9']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--workers 9 exceeds the model's 8 experts/);
  });
});
