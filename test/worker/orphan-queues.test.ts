// A worker killed without deregistering leaves its command queue (kmoe cluster rebalance) in Redis,
// named by an id no later process has: a worker starting sweeps such queues (real redis-server,
// real worker processes). A queue goes only if its worker has had no record for the grace and the
// queue holds no command: a worker paused past its record's TTL keeps the command sent to it (a
// review lost it). A live worker whose queue was deleted still takes the next command.

import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expertQueueName, jobConnection, jobPrefix } from '../../shared/cluster-registry/expert-jobs.js';
import { registryKeys } from '../../shared/cluster-registry/keys.js';
import { orphanQueues, sweepOrphanQueues } from '../../shared/cluster-registry/orphan-queues.js';
import { readWorkers } from '../../shared/cluster-registry/registry-reader.js';
import { Checkpoint } from '../../shared/model/checkpoint.js';
import { until } from '../helpers/log-lines.js';
import { MODEL_DIR } from '../helpers/paths.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { startWorker, type WorkerProcess } from '../helpers/worker-process.js';

let server: RedisServer;
let reader: Redis;
let fingerprint: string;
const workers: WorkerProcess[] = [];
const opts = () => ({ connection: jobConnection(server.url), prefix: jobPrefix() });

beforeAll(async () => {
  server = await startRedis();
  reader = new Redis(server.url);
  const ckpt = await Checkpoint.open(MODEL_DIR);
  fingerprint = ckpt.fingerprint();
  await ckpt.close();
});

afterAll(async () => {
  for (const w of workers) if (w.child.signalCode === null) w.child.kill('SIGCONT');
  await Promise.all(workers.map((w) => w.stop()));
  reader?.disconnect();
  await server?.stop();
});

const queueKeys = (id: string) => reader.keys(`${jobPrefix()}:${expertQueueName(id)}:*`);

/** A registered worker, once its command queue's keys exist (BullMQ writes them just after ready). */
async function started(experts: string): Promise<{ readonly w: WorkerProcess; readonly id: string }> {
  const w = await startWorker(experts, ['--redis', server.url]);
  workers.push(w);
  const id = await idOf(w.url);
  await until(
    'its queue keys',
    async () => (await queueKeys(id)).length > 0,
    () => w.stderr(),
    20_000,
  );
  return { w, id };
}

/** The registered id of the worker at `url`. */
async function idOf(url: string): Promise<string> {
  const record = (await readWorkers(reader)).find((r) => r.url === url);
  if (!record) throw new Error(`no record for ${url}`);
  return record.id;
}

async function lapsed(id: string, log: () => string): Promise<void> {
  await until(
    `the record of ${id} to lapse`,
    async () => (await reader.exists(registryKeys().worker(id))) === 0,
    log,
    20_000,
  );
}

/** Sends a load command to the worker `id` and waits for the experts it then holds. */
async function load(id: string, experts: number[]): Promise<number[]> {
  const queue = new Queue(expertQueueName(id), opts());
  const events = new QueueEvents(expertQueueName(id), opts());
  try {
    await events.waitUntilReady();
    const job = await queue.add('load', { op: 'load', experts, fingerprint });
    return ((await job.waitUntilFinished(events, 60_000)) as { experts: number[] }).experts;
  } finally {
    await events.close();
    await queue.close();
  }
}

const sweep = (graceMs: number, signal = new AbortController().signal) =>
  sweepOrphanQueues(reader, { graceMs, signal });

describe("gone workers' command queues", () => {
  it('the queue of a worker killed without deregistering is swept, and no live one', async () => {
    const { w: killed, id: killedId } = await started('0-3');
    const { id: liveId } = await started('4-7');
    killed.child.kill('SIGKILL');
    await lapsed(killedId, () => killed.stderr());
    expect(await queueKeys(killedId)).not.toEqual([]);
    // A key under the worker pattern that is not a record still keeps its queue: it may be a worker
    // of another release.
    await reader.set(registryKeys().worker('other-release'), 'not json');
    const other = new Queue(expertQueueName('other-release'), opts());
    await other.add('load', { op: 'load', experts: [0], fingerprint: 'another model' });
    await other.close();
    expect(await orphanQueues(reader)).toEqual([expertQueueName(killedId)]);

    // A worker starting finds it and sweeps it after the grace (30 s; its own sweep is not waited
    // for here, the same sweep is run with a short grace below).
    const { w: next, id: nextId } = await started('0-3');
    await until(
      "the next worker's sweep to begin",
      () => /1 command queue\(s\) of workers with no registry record: in 30 s, deleting/.test(next.stderr()),
      () => next.stderr(),
      20_000,
    );
    expect(await sweep(500)).toEqual({ found: 1, deleted: 1, busy: 0, returned: 0, failed: [] });
    expect(await queueKeys(killedId)).toEqual([]);
    expect(await queueKeys(liveId)).not.toEqual([]);
    expect(await queueKeys('other-release')).not.toEqual([]);
    expect(await queueKeys(nextId)).not.toEqual([]);
    expect(await orphanQueues(reader)).toEqual([]);
  }, 120_000);

  it('a worker paused past its record keeps the command sent to it, and applies it when it resumes', async () => {
    const { w: paused, id } = await started('0-3');
    paused.child.kill('SIGSTOP');
    const applied = load(id, [4]);
    await lapsed(id, () => paused.stderr());
    // Before: deleted with the job in it; the rebalancer waited out its timeout.
    expect(await sweep(500)).toEqual({ found: 1, deleted: 0, busy: 1, returned: 0, failed: [] });
    paused.child.kill('SIGCONT');
    expect(await applied).toEqual([0, 1, 2, 3, 4]);
  }, 120_000);

  it('a worker paused past its record and resumed within the grace keeps its queue', async () => {
    const { w, id } = await started('0-3');
    // Its queue holds no job: only its record coming back keeps it.
    w.child.kill('SIGSTOP');
    await lapsed(id, () => w.stderr());
    const sweeping = sweep(8_000);
    await new Promise((r) => setTimeout(r, 500));
    w.child.kill('SIGCONT');
    expect(await sweeping).toEqual({ found: 1, deleted: 0, busy: 0, returned: 1, failed: [] });
    expect(await queueKeys(id)).not.toEqual([]);
  }, 120_000);

  it('a live worker whose queue was deleted still takes the next command', async () => {
    const { id } = await started('4-7');
    const queue = new Queue(expertQueueName(id), opts());
    await queue.obliterate();
    await queue.close();
    expect(await queueKeys(id)).toEqual([]);
    expect(await load(id, [0])).toEqual([0, 4, 5, 6, 7]);
  }, 120_000);

  it('a sweep stops when its worker leaves, during the grace', async () => {
    await reader.set(`${jobPrefix()}:${expertQueueName('gone')}:meta`, 'x');
    const stop = new AbortController();
    const t0 = Date.now();
    const sweeping = sweep(60_000, stop.signal);
    setTimeout(() => stop.abort(), 200);
    expect(await sweeping).toEqual({ found: 1, deleted: 0, busy: 0, returned: 0, failed: [] });
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});
