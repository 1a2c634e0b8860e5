// `kmoe serve --redis` when registered workers answer but fail the handshake (real redis-server,
// real `kmoe worker` and `kmoe serve` processes, a cluster token). The case: a token worker outside
// the registry (a fixed --workers one, which proves on any URL and says it is not registered) whose
// URL someone wrote into Redis. Serve requires a worker registered under the URL it dials, so it
// refuses that one, at start-up and when it reconnects to a member. Before, the start-up exited
// (a restart loop under a supervisor) and the reconnects' refusals were not logged at all.

import type { ChildProcess } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../../../shared/model/checkpoint.js';
import { randomClusterToken } from '../../../../shared/protocol/auth.js';
import { greedyCompletion } from '../../../helpers/greedy-completion.js';
import { type LogLine, logLines, until } from '../../../helpers/log-lines.js';
import { MODEL_DIR } from '../../../helpers/paths.js';
import { restartablePort } from '../../../helpers/ports.js';
import { type RedisServer, startRedis } from '../../../helpers/redis-server.js';
import { startWorker, type WorkerProcess } from '../../../helpers/worker-process.js';
import { workerRecordJson } from '../../../helpers/worker-record.js';
import { type ServeProcess, startServe } from '../../server/serve-process.js';

const TOKEN = randomClusterToken();
const env = { ...process.env, KMOE_CLUSTER_TOKEN: TOKEN };

const notRegistered = (url: string) =>
  `worker ${url}: proved the cluster token for ${url}/, but the worker is not registered under that URL: a worker outside the registry (a fixed --workers list, a local cluster) proves on any URL it is reached by, so this registry record may be a relay to it`;
const WAITING =
  'the registered workers that complete the handshake do not cover every expert: serve starts once they do; retrying';
const UNREACHABLE = 'a worker could not be connected; retrying with backoff';

let redis: RedisServer;
let client: Redis;
let fingerprint: string;
let server: ServeProcess | undefined;
const workers: WorkerProcess[] = [];

/** Writes a ready record of all 8 experts at `url` under `id`, alive for a minute. */
async function register(id: string, url: string): Promise<void> {
  await client.set(
    `kmoe:worker:${id}`,
    workerRecordJson({ id, url, fingerprint, heartbeatAt: Date.now() }),
    'PX',
    60_000,
  );
}

/**
 * `kmoe serve --redis` started and maybe still waiting for workers: its log so far, its process,
 * and its handle once it listens.
 */
function spawnServe(args: readonly string[]): {
  readonly serving: Promise<ServeProcess>;
  log(): string;
  child(): ChildProcess;
} {
  let early: { child: ChildProcess; stderr(): string } | undefined;
  const serving = startServe(args, undefined, env, {
    onStarted: (p) => {
      early = p;
    },
  });
  serving.catch(() => {});
  return { serving, log: () => early?.stderr() ?? '', child: () => early!.child };
}

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  const ckpt = await Checkpoint.open(MODEL_DIR);
  fingerprint = ckpt.fingerprint();
  await ckpt.close();
});

afterAll(async () => {
  await server?.stop();
  await Promise.all(workers.map((w) => w.stop()));
  client?.disconnect();
  await redis?.stop();
});

describe('kmoe serve --redis with registered workers that fail the handshake', () => {
  let registeredPort: number;

  it('waits at start-up, naming why, and starts once a worker that passes registers', async () => {
    // A token worker with no --redis: it proves on any URL, as not registered.
    const unbound = await startWorker('0-7', [], { env });
    workers.push(unbound);
    await register('unbound', unbound.url);
    const { serving, log, child } = spawnServe(['--redis', redis.url, '--wire', 'fp32']);
    await until(
      'serve to say why it waits',
      () => {
        if (child().exitCode !== null)
          throw new Error(`serve exited with ${child().exitCode}; log:\n${log()}`);
        return log().includes(WAITING);
      },
      log,
      60_000,
    );
    const waiting = logLines(log()).filter((l) => l.msg === WAITING);
    expect(waiting[0]!.err).toBe(
      `experts 0-7 of 8 are held by no worker (none connected); the handshake of a worker failed: ${notRegistered(unbound.url)}`,
    );
    // Before: serve exited here ("kmoe serve exited with 1 before listening"). Now it keeps
    // trying (1 s, 2 s, ... between starts) and says so once per reason.
    await new Promise((r) => setTimeout(r, 4_000));
    expect(child().exitCode).toBeNull();
    expect(logLines(log()).filter((l) => l.msg === WAITING)).toHaveLength(1);
    // The record changes (its worker restarted, say) and the start still fails the same way: said
    // again, as the operator's fix did not work.
    await register('unbound', unbound.url);
    await until(
      'the reason to be said again',
      () => logLines(log()).filter((l) => l.msg === WAITING).length === 2,
      log,
    );

    // A worker registered under its own URL: serve starts on it (a change of records ends the wait).
    registeredPort = await restartablePort();
    const real = await startWorker('0-7', ['--redis', redis.url, '--port', String(registeredPort)], {
      env,
    });
    workers.push(real);
    server = await serving;
    expect(await greedyCompletion(server.url)).not.toBe('');
    const started = logLines(server.stderr()).find((l) => l.msg === 'serving') as
      | (LogLine & { experts: string })
      | undefined;
    expect(started?.experts).toContain(real.url);
    expect(started?.experts).not.toContain(unbound.url);
  });

  it("logs once why a member's reconnect is refused", async () => {
    const srv = server!;
    const real = workers[1]!;
    const record = (await client.keys('kmoe:worker:*')).find((k) => k !== 'kmoe:worker:unbound')!;
    const json = (await client.get(record))!;
    // The registered worker dies; its record is kept alive by hand, as a live worker's would be.
    real.child.kill('SIGKILL');
    await new Promise((r) => real.child.once('exit', r));
    await client.set(record, json.replace(/"heartbeatAt":\d+/, `"heartbeatAt":${Date.now()}`), 'PX', 60_000);
    await until(
      'serve to lose the worker',
      () =>
        logLines(srv.stderr()).some(
          (l) => l.msg === 'lost the connection to a worker; reconnecting with backoff',
        ),
      srv.stderr,
    );
    // At its URL now: a token worker that is not registered there.
    const impostor = await startWorker('0-7', ['--port', String(registeredPort)], { env });
    workers.push(impostor);
    const refusals = () =>
      logLines(srv.stderr()).filter((l) => l.msg === UNREACHABLE && l.err === notRegistered(real.url));
    // Before: nothing in serve's log while its reconnects were refused.
    await until('serve to log the refusal', () => refusals().length > 0, srv.stderr);
    // Two more refused attempts (the impostor proves each time; serve refuses), still one line.
    const accepted = () => logLines(impostor.stderr()).filter((l) => l.msg === 'accepted coordinator').length;
    const before = accepted();
    await until('two more reconnects', () => accepted() >= before + 2, impostor.stderr);
    expect(refusals()).toHaveLength(1);
    expect(refusals()[0]!.worker).toBe(real.url);
    // Another record of that URL (a worker registering there again): serve joins it, is refused
    // the same way, and does not say it twice. Before: an error line repeating the warning above.
    await register('again', real.url);
    await until(
      'serve to log the join',
      () => logLines(srv.stderr()).some((l) => l.msg.startsWith('registry: worker again')),
      srv.stderr,
    );
    // The join's attempt: a handshake the impostor accepts, refused by serve.
    const tried = accepted();
    await until('the join to be tried', () => accepted() > tried, impostor.stderr);
    await new Promise((r) => setTimeout(r, 1_000));
    const joinFailures = logLines(srv.stderr()).filter(
      (l) => l.msg === 'a registered worker could not be connected' && l.worker === real.url,
    );
    expect(joinFailures).toEqual([]);
    expect(refusals()).toHaveLength(1);
    // Both records leave (the URL is no member), then a new one comes: its refused join is news,
    // said at error level, though the text is the one said before the leave.
    for (const key of await client.keys('kmoe:worker:*')) {
      if (key === 'kmoe:worker:unbound') continue;
      await client.del(key);
      await client.publish(
        'kmoe:events',
        JSON.stringify({ event: 'leave', id: key.slice('kmoe:worker:'.length) }),
      );
    }
    await until(
      'the URL to leave',
      () =>
        logLines(srv.stderr()).some(
          (l) => l.msg === 'worker left: routing nothing more to it' && l.worker === real.url,
        ),
      srv.stderr,
    );
    await register('third', real.url);
    const failedJoin = () =>
      logLines(srv.stderr()).filter(
        (l) =>
          l.msg === 'a registered worker could not be connected' && l.worker === real.url && l.level === 50,
      );
    await until('the new join to fail, said', () => failedJoin().length > 0, srv.stderr);
    expect(failedJoin()[0]!.err).toBe(notRegistered(real.url));
  });
});

describe('a refused worker fixed and restarted at its URL while serve waits', () => {
  it('is served once it registers: its earlier leave is not replayed after the start', async () => {
    // Its own registry and serve: the records above would cover the experts.
    const redis2 = await startRedis();
    const client2 = new Redis(redis2.url);
    let srv: ServeProcess | undefined;
    const started: WorkerProcess[] = [];
    try {
      const port = await restartablePort();
      const unbound = await startWorker('0-7', ['--port', String(port)], { env });
      started.push(unbound);
      await client2.set(
        'kmoe:worker:u',
        workerRecordJson({ id: 'u', url: unbound.url, fingerprint, heartbeatAt: Date.now() }),
        'PX',
        60_000,
      );
      const { serving, log } = spawnServe(['--redis', redis2.url, '--wire', 'fp32']);
      await until('serve to wait', () => log().includes(WAITING), log, 60_000);
      // The operator stops it (its record leaves) and starts it right: registered, same URL.
      expect(await unbound.stop()).toBe(0);
      await client2.del('kmoe:worker:u');
      await client2.publish('kmoe:events', JSON.stringify({ event: 'leave', id: 'u' }));
      const fixed = await startWorker('0-7', ['--redis', redis2.url, '--port', String(port)], { env });
      started.push(fixed);
      expect(fixed.url).toBe(unbound.url);
      srv = await serving;
      // Before: HTTP 503 experts_unavailable for experts 0-7, for good; the log said "worker left".
      expect(await greedyCompletion(srv.url)).not.toBe('');
      expect(logLines(srv.stderr()).some((l) => l.msg === 'worker left: routing nothing more to it')).toBe(
        false,
      );
    } finally {
      await srv?.stop();
      await Promise.all(started.map((w) => w.stop()));
      client2.disconnect();
      await redis2.stop();
    }
  });
});

describe('a signal while a start attempt waits for a silent worker', () => {
  it('is acknowledged at once, and serve exits 0 once the attempt ends', async () => {
    const redis3 = await startRedis();
    const client3 = new Redis(redis3.url);
    // Accepts TCP and never answers: each start attempt waits the handshake bound (10 s) for it.
    const sockets: Socket[] = [];
    const silent = createServer((socket) => {
      sockets.push(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const url = `ws://127.0.0.1:${(silent.address() as { port: number }).port}`;
    let started: ReturnType<typeof spawnServe> | undefined;
    try {
      await client3.set(
        'kmoe:worker:s',
        workerRecordJson({ id: 's', url, fingerprint, heartbeatAt: Date.now() }),
        'PX',
        60_000,
      );
      started = spawnServe(['--redis', redis3.url]);
      const { log } = started;
      // The reachability probe connects and closes; the handshake's socket stays open.
      await until(
        'serve to dial the silent worker',
        () => sockets.some((k) => !k.destroyed && k.readable),
        log,
        60_000,
      );
      await new Promise((r) => setTimeout(r, 500));
      const child = started.child();
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      const signalled = Date.now();
      child.kill('SIGINT');
      // Before: nothing was logged until the attempt's handshake bound ran out.
      await until(
        'serve to acknowledge the signal',
        () => logLines(log()).some((l) => l.msg.startsWith('stopping once the start under way ends')),
        log,
        5_000,
      );
      expect(Date.now() - signalled).toBeLessThan(5_000);
      expect(await exited).toBe(0);
    } finally {
      if (started !== undefined && started.child().exitCode === null) started.child().kill('SIGKILL');
      for (const k of sockets) k.destroy();
      await new Promise((r) => silent.close(r));
      client3.disconnect();
      await redis3.stop();
    }
  });
});
