// The Redis registry end to end, with a real redis-server and real worker and serve processes:
// two `--experts auto` workers split the experts between them, a coordinator started after them
// finds them, `kmoe cluster status --json` reports them, a worker that joins during a stream of
// requests receives work with no request failing, a draining worker leaves without a failure, and
// a Redis restart during serving costs no request while the workers re-register.

import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readWorkers } from '../../../../shared/cluster-registry/registry-reader.js';
import { runCli } from '../../../helpers/cli.js';
import { type RedisServer, startRedis } from '../../../helpers/redis-server.js';
import { requestLoops } from '../../../helpers/request-loops.js';
import { startWorker, type WorkerProcess } from '../../../helpers/worker-process.js';
import { type ServeProcess, startServe } from '../../server/serve-process.js';

interface StatusJson {
  registry: string;
  workers: {
    id: string;
    url: string;
    status: string;
    experts: number[];
    heartbeatAgeMs: number;
    pairsPerSec: number;
    tokensPerSec: number;
  }[];
  models: {
    numExperts: number;
    covered: boolean;
    missing: number[];
    experts: { expert: number; replicas: number; pairsPerSec: number }[];
  }[];
}

let redis: RedisServer;
const workers: WorkerProcess[] = [];
let server: ServeProcess | undefined;

const PROMPT = 'def fib(n):';
const MAX_TOKENS = 8;

async function complete(): Promise<string> {
  const res = await fetch(`${server!.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny-mixtral', prompt: PROMPT, max_tokens: MAX_TOKENS, temperature: 0 }),
  });
  const body = (await res.json()) as { choices?: { text: string }[]; usage?: { completion_tokens: number } };
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${JSON.stringify(body)}`);
  expect(body.usage?.completion_tokens).toBe(MAX_TOKENS);
  return body.choices![0]!.text;
}

/** Requests from `concurrency` loops until `until` resolves; every outcome is kept. */
async function stream(
  concurrency: number,
  until: Promise<unknown>,
): Promise<{ texts: string[]; errors: string[] }> {
  const { results, errors } = await requestLoops(concurrency, until, () => complete());
  return { texts: results, errors };
}

async function status(): Promise<StatusJson> {
  const r = await runCli(['cluster', 'status', '--redis', redis.url, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as StatusJson;
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function okRequests(w: WorkerProcess): Promise<number> {
  const text = await (await fetch(`${w.url.replace('ws://', 'http://')}/metrics`)).text();
  const m = /^kmoe_worker_requests_total\{outcome="ok"\} (\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await server?.stop();
  await Promise.all(workers.map((w) => w.stop()));
  await redis?.stop();
});

describe('cluster registry (real redis-server)', () => {
  it('--experts auto: two workers on an 8-expert model split all 8 between them', async () => {
    // Started together: the registry's choice lock makes the second pick what the first did not.
    workers.push(...(await Promise.all([0, 1].map(() => startWorker('auto', ['--redis', redis.url])))));
    const held = workers.flatMap((w) => w.experts).sort((a, b) => a - b);
    expect(held).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(workers[0]!.experts).toHaveLength(4);
  });

  it('kmoe cluster status --json lists the workers, their experts and full coverage', async () => {
    const s = await status();
    expect(s.registry).toBe(redis.url);
    expect(s.workers.map((w) => w.url).sort()).toEqual(workers.map((w) => w.url).sort());
    for (const w of s.workers) {
      expect(w.status).toBe('ready');
      expect(w.experts).toEqual(workers.find((x) => x.url === w.url)!.experts);
      // Heartbeats every second, TTL 5 s: a listed worker's heartbeat is recent.
      expect(w.heartbeatAgeMs).toBeLessThan(5000);
    }
    expect(s.models).toHaveLength(1);
    expect(s.models[0]).toMatchObject({ numExperts: 8, covered: true, missing: [] });
    expect(s.models[0]!.experts.map((e) => e.replicas)).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
  });

  it('a coordinator started after the workers finds them and serves', async () => {
    server = await startServe(['--redis', redis.url, '--wire', 'fp32']);
    const ready = await fetch(`${server.url}/ready`);
    expect(ready.status).toBe(200);
    const body = (await ready.json()) as { experts: { covered: boolean; description: string } };
    expect(body.experts.covered).toBe(true);
    for (const w of workers) expect(body.experts.description).toContain(w.url);
    expect((await complete()).length).toBeGreaterThan(0);
  });

  it('a second coordinator shares the registry and serves the same text', async () => {
    const first = await complete();
    const second = await startServe(['--redis', redis.url, '--wire', 'fp32']);
    try {
      const res = await fetch(`${second.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'tiny-mixtral',
          prompt: PROMPT,
          max_tokens: MAX_TOKENS,
          temperature: 0,
        }),
      });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { choices: { text: string }[] }).choices[0]!.text).toBe(first);
    } finally {
      expect(await second.stop()).toBe(0);
    }
    // The first coordinator is unaffected by the second leaving.
    expect(await complete()).toBe(first);
  });

  it('a coordinator started right after a worker crashed (its record not yet expired) starts without it', async () => {
    const crashed = await startWorker('0-7', ['--redis', redis.url]);
    crashed.child.kill('SIGKILL');
    await crashed.stop();
    // Read in this process, not through a CLI start: the record has at most its 5 s TTL left.
    const reader = new Redis(redis.url);
    try {
      expect((await readWorkers(reader)).map((w) => w.url)).toContain(crashed.url);
    } finally {
      reader.disconnect();
    }
    const third = await startServe(['--redis', redis.url, '--wire', 'fp32']);
    try {
      const ready = (await (await fetch(`${third.url}/ready`)).json()) as {
        experts: { description: string };
      };
      expect(ready.experts.description).not.toContain(crashed.url);
      expect(ready.experts.description).toContain(`remote experts on ${workers.length} workers`);
    } finally {
      expect(await third.stop()).toBe(0);
    }
  });

  it('a worker that joins during a stream of requests receives work; no request fails', async () => {
    const baseline = await complete();
    let loaded: StatusJson | undefined;
    const joined = (async () => {
      const w = await startWorker('0-7', ['--redis', redis.url]);
      workers.push(w);
      // Used within seconds: the join event reaches the coordinator at once.
      await until('the joined worker to answer a dispatch', async () =>
        (await okRequests(w)) > 0 ? true : undefined,
      );
      // Under load, the workers' heartbeats carry their measured load into the registry.
      loaded = await until('a heartbeat with load', async () => {
        const st = await status();
        return st.workers.some((x) => x.pairsPerSec > 0) ? st : undefined;
      });
      return w;
    })();
    const { texts, errors } = await stream(3, joined);
    const w = await joined;
    expect(errors).toEqual([]);
    expect(texts.length).toBeGreaterThan(0);
    // Greedy decoding: the same text whichever replica computed which expert.
    for (const t of texts) expect(t).toBe(baseline);
    expect(await okRequests(w)).toBeGreaterThan(0);
    expect(server!.stderr()).toContain('worker joined: routing to it');
    const busy = loaded!.workers.find((x) => x.pairsPerSec > 0)!;
    // K = 2 experts per token on the tiny model: a worker computes at most 2 pairs per token it receives.
    expect(busy.tokensPerSec).toBeGreaterThan(0);
    // (Both are rounded to 0.01/s in the record.)
    expect(busy.pairsPerSec).toBeLessThanOrEqual(2 * busy.tokensPerSec + 0.02);
    const perExpert = loaded!.models[0]!.experts.reduce((a, e) => a + e.pairsPerSec, 0);
    expect(perExpert).toBeGreaterThan(0);
  });

  it('SIGTERM drains a worker: it deregisters first and no request fails', async () => {
    const leaving = workers.pop()!;
    const stopped = leaving.stop();
    const { errors } = await stream(3, stopped);
    expect(await stopped).toBe(0);
    expect(errors).toEqual([]);
    expect(leaving.stderr()).toContain('deregistering');
    expect(server!.stderr()).toMatch(/deregistered.*worker left: routing nothing more to it/);
    // The drained worker's record is gone at once; a worker SIGKILLed by an earlier test may still
    // be listed until its heartbeat TTL runs out, so wait for the registry to settle.
    const remaining = workers.map((w) => w.url).sort();
    const s = await until('the registry to list only the remaining workers', async () => {
      const now = await status();
      const urls = now.workers.map((w) => w.url);
      expect(urls).not.toContain(leaving.url);
      return urls.sort().join() === remaining.join() ? now : undefined;
    });
    expect(s.workers.map((w) => w.url).sort()).toEqual(remaining);
  });

  it('Redis restarted during serving: requests keep succeeding and the workers re-register', async () => {
    const expiries = () => server!.stderr().split('heartbeat expired').length;
    const expiredBefore = expiries();
    const restarted = (async () => {
      await redis.restart();
      // Nothing survives the restart (no persistence): the workers' next heartbeats re-create it.
      return until('the workers to re-register', async () => {
        const s = await status().catch(() => undefined);
        return s && s.workers.length === workers.length ? s : undefined;
      });
    })();
    const { texts, errors } = await stream(2, restarted);
    const s = await restarted;
    expect(errors).toEqual([]);
    expect(texts.length).toBeGreaterThan(0);
    expect(s.models[0]).toMatchObject({ covered: true });
    expect((await fetch(`${server!.url}/ready`)).status).toBe(200);
    // An empty registry right after the restart is not a departure: the workers get a TTL to re-register.
    expect(expiries()).toBe(expiredBefore);
    // The coordinator resynced: its gauges show the registry read recently again.
    const metrics = await until('the coordinator to read the registry again', async () => {
      const text = await (await fetch(`${server!.url}/metrics`)).text();
      const m = /^kmoe_cluster_registry_read_age_seconds (\S+)/m.exec(text);
      return m && Number(m[1]) < 2 && /^kmoe_cluster_workers\{status="ready"\} 2$/m.test(text)
        ? text
        : undefined;
    });
    expect(metrics).toMatch(/^kmoe_cluster_expert_replicas\{expert="7"\} 1$/m);
  });

  it('never prints a Redis password: an unreachable registry is named with the password masked', async () => {
    const r = await runCli(['cluster', 'status', '--redis', 'redis://user:hunter2-secret@127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('redis://user:***@127.0.0.1:1');
    expect(r.stderr + r.stdout).not.toContain('hunter2-secret');
  });
});

describe('cluster registry with a password (real redis-server --requirepass)', () => {
  it('registers with the password and never prints it; a wrong one fails naming the masked URL', async () => {
    const secret = 'hunter2-registry-pw';
    const locked = await startRedis({ password: secret });
    let w: WorkerProcess | undefined;
    try {
      w = await startWorker('0-3', ['--redis', locked.url]);
      const r = await runCli(['cluster', 'status', '--redis', locked.url, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const s = JSON.parse(r.stdout) as StatusJson;
      expect(s.registry).toBe(`redis://:***@127.0.0.1:${locked.port}`);
      expect(s.workers.map((x) => x.url)).toEqual([w.url]);
      expect(w.stderr()).toContain(`redis://:***@127.0.0.1:${locked.port}`);

      const wrong = await runCli([
        'cluster',
        'status',
        '--redis',
        `redis://:not-${secret}@127.0.0.1:${locked.port}`,
      ]);
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toContain('WRONGPASS');
      expect(wrong.stderr).toContain(`redis://:***@127.0.0.1:${locked.port}`);
      for (const text of [r.stdout, r.stderr, w.stderr(), wrong.stdout, wrong.stderr])
        expect(text).not.toContain(secret);
    } finally {
      await w?.stop();
      await locked.stop();
    }
  });
});
