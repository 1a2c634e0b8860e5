// How `kmoe serve --redis` applies what the registry says, against records a hostile or broken
// registry holds (real redis-server, real worker processes, a real kmoe serve): records whose URL
// accepts TCP and never answers must not hold up a real worker's join; ignored records are logged
// once; a second record of a worker's URL spelt otherwise is that worker; a frozen worker's
// requests fail over once its record expires. The dispatch timeout is 120 s so that a request that
// waited it out cannot pass for one that failed over.

import type { AddressInfo, Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { greedyCompletion } from '../../../helpers/greedy-completion.js';
import { type LogLine, logLines, until as waitUntil } from '../../../helpers/log-lines.js';
import { LoopbackListeners } from '../../../helpers/loopback-listeners.js';
import { scrape } from '../../../helpers/prometheus.js';
import { type RedisServer, startRedis } from '../../../helpers/redis-server.js';
import { startWorker, type WorkerProcess } from '../../../helpers/worker-process.js';
import { forgeRecordLike } from '../../../helpers/worker-record.js';
import { type ServeProcess, startServe } from '../../server/serve-process.js';

let redis: RedisServer;
let client: Redis;
const workers: WorkerProcess[] = [];
let server: ServeProcess;
const listeners = new LoopbackListeners();
/** The silent listeners' URLs, and the sockets each has accepted. */
const silent: { url: string; sockets: Socket[] }[] = [];

/** The server's log lines so far. */
const serverLog = () => logLines(server.stderr());
const until = (what: string, check: () => boolean | Promise<boolean>, ms?: number) =>
  waitUntil(what, check, () => server.stderr(), ms);

function complete(signal?: AbortSignal): Promise<string> {
  return greedyCompletion(server.url, signal);
}

/** Registers `url` under `id`, a copy of the real worker's record otherwise. */
const forge = (id: string, url: string) => forgeRecordLike(client, id, url);

/** A TCP listener that accepts connections and never sends a byte. */
async function silentListener(): Promise<void> {
  const sockets: Socket[] = [];
  const s = await listeners.silent(0, (sock) => sockets.push(sock));
  silent.push({ url: `ws://127.0.0.1:${(s.address() as AddressInfo).port}`, sockets });
}

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  workers.push(await startWorker('0-7', ['--redis', redis.url]));
  // Baseline balance gives each layer's first expert to the lowest-index live holder (worker A, the
  // first to join), so a frozen A is sent pairs at once; k-aware balance could route around it.
  server = await startServe([
    '--redis',
    redis.url,
    '--wire',
    'fp32',
    '--dispatch-timeout',
    '120000',
    '--balance',
    'baseline',
  ]);
});

afterAll(async () => {
  await server?.stop();
  await Promise.all(workers.map((w) => w.stop()));
  await listeners.close();
  client?.disconnect();
  await redis?.stop();
});

describe('registry joins (real redis-server, workers, kmoe serve)', () => {
  it('a worker registered after three records at silent ports joins while their handshakes are still pending', async () => {
    const baseline = await complete();
    // Started before the race, registered in it: a worker's start-up on a loaded machine (seconds)
    // is not part of what is timed against the silent handshakes' 10 s bound.
    const b = await startWorker('0-7');
    workers.push(b);
    for (let i = 0; i < 3; i++) await silentListener();
    for (const [i, s] of silent.entries()) await forge(`silent-${i}`, s.url);
    // Every silent URL has been dialled: three handshakes are waiting for an answer that never comes.
    await until('the silent ports to be dialled', () => silent.every((s) => s.sockets.length > 0));
    await forge('real-b', b.url);
    await until('worker B to join', () =>
      serverLog().some((l) => l.msg === 'worker joined: routing to it' && l.worker === b.url),
    );
    // Joins applied one at a time would have joined B only after the three handshakes failed: its
    // join is logged before any of their failures.
    const lines = serverLog();
    const joined = lines.findIndex((l) => l.msg === 'worker joined: routing to it' && l.worker === b.url);
    const failedBefore = lines
      .slice(0, joined)
      .filter((l) => l.msg === 'a registered worker could not be connected');
    expect(failedBefore.map((l) => l.worker)).toEqual([]);
    // Serving is not held up by the pending handshakes either.
    expect(await complete()).toBe(baseline);
    // The pending ones do fail, naming the handshake limit.
    await until('the silent joins to fail', () =>
      silent.every((s) =>
        serverLog().some((l) => l.msg === 'a registered worker could not be connected' && l.worker === s.url),
      ),
    );
    const reasons = serverLog().filter((l) => l.msg === 'a registered worker could not be connected');
    for (const l of reasons) expect(l.err).toMatch(/no handshake within 10000 ms/);
  });

  it("a second record of a worker's URL spelt otherwise is that worker, not a second one", async () => {
    // The worker compares the URL dialled in canonical form, so it would accept the alias: serve
    // joined it as another holder of the same experts (one process counted twice).
    const a = workers[0]!;
    const accepted = () =>
      a
        .stderr()
        .split('\n')
        .filter((l) => l.includes('"msg":"accepted coordinator"')).length;
    const before = accepted();
    const alias = `${a.url.replace('ws://', 'WS://')}/`;
    await forge('alias', alias);
    try {
      const joinOf = () =>
        serverLog().find((l) => l.msg === 'worker joined: routing to it' && l.reason?.includes(`(${alias})`));
      await until('the alias record to be applied', () => joinOf() !== undefined);
      expect(joinOf()!.worker).toBe(a.url);
      expect(joinOf()!.reason).toContain(`: the worker URL of member ${a.url}`);
      expect(serverLog().filter((l) => l.worker === alias)).toEqual([]);
      // Applied on the connection serve has: the worker saw no second coordinator.
      expect(accepted()).toBe(before);
    } finally {
      // Deregistered: while it stays, A's URL is served by a record, and the frozen-worker case
      // below needs A's own record's expiry to take it out.
      await client.del('kmoe:worker:alias');
      await client.publish('kmoe:events', JSON.stringify({ event: 'leave', id: 'alias' }));
    }
  });
});

describe('records the coordinator ignores', () => {
  it('are logged once each, with their text quoted on one line, not at every poll', async () => {
    const ignoring = () => serverLog().filter((l) => l.msg.startsWith('registry: ignoring record'));
    const before = ignoring().length;
    const keys = await client.keys('kmoe:worker:*');
    const base = JSON.parse((await client.get(keys[0]!))!) as Record<string, unknown>;
    const record = (fields: Record<string, unknown>) => JSON.stringify({ ...base, ...fields });
    await client.set(
      'kmoe:worker:bad-url',
      record({ id: 'bad-url', url: 'http://127.0.0.1:1' }),
      'PX',
      60_000,
    );
    await client.set('kmoe:worker:not-json', 'not json\u001b[31m\n{"msg":"forged"}', 'PX', 60_000);
    await client.set(
      'kmoe:worker:other\nmodel',
      record({ id: 'other\nmodel', url: 'ws://127.0.0.1:1', fingerprint: 'f'.repeat(64) }),
      'PX',
      60_000,
    );
    await until('the three records to be logged', () => ignoring().length >= before + 3);
    // Several polls later (a record written after the wait is logged: later reads happened).
    await new Promise((r) => setTimeout(r, 3000));
    await client.set('kmoe:worker:sentinel', record({ id: 'sentinel', url: '' }), 'PX', 60_000);
    await until('the sentinel to be logged', () => ignoring().some((l) => l.msg.includes('sentinel')));
    const lines = ignoring().slice(before);
    expect(lines.map((l) => l.msg)).toEqual([
      expect.stringMatching(
        /^registry: ignoring record kmoe:worker:bad-url: url: must be a ws:\/\/ or wss:\/\/ URL \(the scheme must be ws:\/\/ or wss:\/\/, not http:\/\/\)$/,
      ),
      expect.stringMatching(/^registry: ignoring record kmoe:worker:not-json: not JSON \(.*not json\\u001b/),
      expect.stringMatching(
        /^registry: ignoring record kmoe:worker:other\\nmodel: serves another model \(fingerprint ffffffffffffffff,/,
      ),
      'registry: ignoring record kmoe:worker:sentinel: ready without a URL',
    ]);
    for (const l of lines) expect([l.msg.includes('\n'), l.msg.includes('\u001b')]).toEqual([false, false]);
    await client.del(
      'kmoe:worker:bad-url',
      'kmoe:worker:not-json',
      'kmoe:worker:other\nmodel',
      'kmoe:worker:sentinel',
    );
  });
});

describe('a worker frozen with SIGSTOP', () => {
  it('has its requests failed over to a replica once its registry record expires, not at the dispatch timeout', async () => {
    // C is a replica for A's experts; A (workers[0], joined first) is the one frozen.
    const c = await startWorker('0-7', ['--redis', redis.url]);
    workers.push(c);
    await until('worker C to join', () =>
      serverLog().some((l) => l.msg === 'worker joined: routing to it' && l.worker === c.url),
    );
    const a = workers[0]!;
    const baseline = await complete();
    const retried = async () => (await scrape(`${server.url}/metrics`))('kmoe_dispatch_retried_pairs_total');
    const retriedBefore = await retried();
    a.child.kill('SIGSTOP');
    try {
      // The first layer sent after the freeze gives A pairs (baseline balance), which wait for A. Half the dispatch timeout: a request that waited it out fails here.
      const texts = await Promise.all([0, 1, 2].map(() => complete(AbortSignal.timeout(60_000))));
      expect(texts).toEqual([baseline, baseline, baseline]);
    } finally {
      a.child.kill('SIGCONT');
    }
    expect(await retried()).toBeGreaterThan(retriedBefore);
    const down = serverLog().filter(
      (l) => l.msg === 'a worker that left the registry closed its connection' && l.worker === a.url,
    ) as (LogLine & { reason?: string })[];
    expect(down.map((l) => l.reason)).toEqual([
      expect.stringMatching(/^is gone from the registry \(worker \S+ \(ws:\/\/\S+\) heartbeat expired\)$/),
    ]);
    expect(server.stderr()).not.toContain('sent no result within');
  });
});
