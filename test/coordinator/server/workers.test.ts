// `kmoe serve` with its default embedded cluster: two local worker processes holding half the
// experts each, reached over WebSockets. Greedy output equals the reference (fp32 on the wire),
// dispatch bytes show up in usage and /metrics, a dead worker makes the server unready (503),
// and shutdown stops the workers it started.

import { execFileSync } from 'node:child_process';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { Usage } from '../../../coordinator/server/openai-format.js';
import { KmoeTokenizer } from '../../../shared/model/tokenizer.js';
import { greedyCases, MODEL_DIR, referenceGreedyText } from '../../helpers/paths.js';
import { parseScrape, scrape } from '../../helpers/prometheus.js';
import { type ServeProcess, startServe } from './serve-process.js';

let server: ServeProcess;
/** Both workers' URLs, read from /ready before one of them is killed. */
let workerUrls: string[] = [];
let client: OpenAI;

beforeAll(async () => {
  // No --workers: the default is two local worker processes.
  server = await startServe(['--wire', 'fp32']);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  await server?.stop();
});

/** Whether something still accepts WebSocket connections at `url`. */
function reachable(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.once('open', () => {
      ws.close();
      resolve(true);
    });
    ws.once('error', () => resolve(false));
  });
}

describe('kmoe serve with local workers', () => {
  it('reports the two workers as covering every expert', async () => {
    const ready = (await (await fetch(`${server.url}/ready`)).json()) as {
      status: string;
      experts: { description: string; covered: boolean };
    };
    expect(ready.status).toBe('ready');
    expect(ready.experts.description).toMatch(/remote experts on 2 workers .*: 0-3; .*: 4-7\), fp32 wire/);
  });

  it('generates the reference greedy text with experts on the workers', async () => {
    const tokenizer = await KmoeTokenizer.load(MODEL_DIR);
    const cases = greedyCases();
    const results = await Promise.all(
      cases.map((c) =>
        client.completions.create({
          model: 'tiny-mixtral',
          prompt: c.prompt,
          max_tokens: 32,
          temperature: 0,
        }),
      ),
    );
    results.forEach((res, i) => {
      const c = cases[i]!;
      const expected = referenceGreedyText(tokenizer, c);
      expect(res.choices[0]!.text).toBe(expected);
      const usage = res.usage as unknown as Usage;
      expect(usage.kmoe.avg_k).toBe(2);
      expect(usage.kmoe.bytes_dispatched).toBeGreaterThan(0);
      expect(Number.isInteger(usage.kmoe.bytes_dispatched)).toBe(true);
    });
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const series = metrics.split('\n').filter((l) => l.startsWith('kmoe_dispatch_bytes_total{'));
    expect(series).toHaveLength(4);
    for (const line of series) {
      expect(line).toMatch(/direction="(in|out)",worker="ws:\/\/127\.0\.0\.1:\d+"/);
      expect(Number(line.split(' ')[1])).toBeGreaterThan(0);
    }
  });

  it('exports round trips per worker, and each worker exports what it computed', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const coordinator = parseScrape(text);
    const urls = [...new Set([...text.matchAll(/worker="(ws:\/\/[^"]+)"/g)].map((m) => m[1]!))];
    expect(urls).toHaveLength(2);
    const heldSets: string[] = [];
    for (const url of urls) {
      const label = `worker="${url}"`;
      const messages = coordinator(`kmoe_dispatch_messages_total{${label}}`);
      expect(messages).toBeGreaterThan(0);
      // Every completed request was timed.
      expect(coordinator(`kmoe_worker_round_trip_seconds_count{${label}}`)).toBe(messages);
      expect(coordinator(`kmoe_worker_round_trip_seconds_bucket{${label},le="+Inf"}`)).toBe(messages);
      expect(coordinator(`kmoe_worker_round_trip_seconds_sum{${label}}`)).toBeGreaterThan(0);

      // The worker's own account of the same traffic, on its WebSocket port.
      const http = url.replace(/^ws:/, 'http:');
      const health = (await (await fetch(`${http}/health`)).json()) as { status: string; experts: string };
      expect(health.status).toBe('ok');
      heldSets.push(health.experts);
      const held = health.experts === '0-3' ? [0, 1, 2, 3] : [4, 5, 6, 7];
      const worker = await scrape(`${http}/metrics`);
      expect(worker('kmoe_worker_requests_total{outcome="ok"}')).toBe(messages);
      expect(worker('kmoe_worker_request_seconds_count')).toBe(messages);
      expect(worker('kmoe_worker_coordinators')).toBe(1);
      // Every token-expert activation the router chose for an expert held here was computed here.
      let computed = 0;
      for (let layer = 0; layer < 4; layer++) {
        for (const e of held) {
          const routed = coordinator(`kmoe_expert_token_activations_total{layer="${layer}",expert="${e}"}`);
          if (routed === 0) continue;
          expect(worker(`kmoe_worker_expert_token_activations_total{layer="${layer}",expert="${e}"}`)).toBe(
            routed,
          );
          computed += routed;
        }
      }
      expect(computed).toBeGreaterThan(0);
      // The coordinator counts dispatch frames; the worker also counts the handshake.
      expect(worker('kmoe_worker_bytes_total{direction="in"}')).toBeGreaterThan(
        coordinator(`kmoe_dispatch_bytes_total{direction="out",${label}}`),
      );
    }
    expect(heldSets.sort()).toEqual(['0-3', '4-7']);
  });

  it('turns unready and refuses generation with 503 when a worker dies', async () => {
    const before = (await (await fetch(`${server.url}/ready`)).json()) as {
      experts: { description: string };
    };
    // The workers are the server's child processes; kill one the way a crash would.
    const children = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(server.child.pid)], {
      encoding: 'utf8',
    })
      .split('\n')
      .filter((line) => / worker --model /.test(line))
      .map((line) => Number(line.trim().split(/\s+/)[0]));
    expect(children).toHaveLength(2);
    process.kill(children[0]!, 'SIGKILL');
    let ready = await fetch(`${server.url}/ready`);
    for (const deadline = Date.now() + 10_000; ready.status === 200 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      ready = await fetch(`${server.url}/ready`);
    }
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({
      status: 'not_ready',
      experts: {
        covered: false,
        detail: expect.stringMatching(/worker \d \(ws:\/\/.*\) exited \(SIGKILL\)/),
      },
    });
    const err = await client.completions
      .create({ model: 'tiny-mixtral', prompt: 'x', max_tokens: 2 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('experts_unavailable');
    // Status endpoints keep answering; the description names the live workers only.
    expect(before.experts.description).toMatch(/2 workers/);
    workerUrls = [...before.experts.description.matchAll(/ws:\/\/[\d.]+:\d+/g)].map((m) => m[0]);
    const after = (await (await fetch(`${server.url}/ready`)).json()) as { experts: { description: string } };
    expect(after.experts.description).toMatch(/remote experts on 1 worker \(/);
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });

  it('stops the workers it started on SIGTERM', async () => {
    const urls = workerUrls;
    expect(urls).toHaveLength(2);
    // Worker 0 was killed above; the other is still up until the server stops it.
    expect((await Promise.all(urls.map(reachable))).filter(Boolean)).toHaveLength(1);
    expect(await server.stop()).toBe(0);
    for (const url of urls) expect(await reachable(url)).toBe(false);
  });
});
