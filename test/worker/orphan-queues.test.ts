// A worker killed without deregistering leaves its command queue (kmoe cluster rebalance) in Redis,
// named by an id no later process has: the next worker to start deletes it, and only it (real
// redis-server, real worker processes). A live worker whose queue was deleted (its record lapsed
// for a moment while another started) still takes the next command.

import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expertQueueName, jobConnection, jobPrefix } from '../../shared/cluster-registry/expert-jobs.js';
import { registryKeys } from '../../shared/cluster-registry/keys.js';
import { deleteQueues, orphanQueues } from '../../shared/cluster-registry/orphan-queues.js';
import { readWorkers } from '../../shared/cluster-registry/registry-reader.js';
import { Checkpoint } from '../../shared/model/checkpoint.js';
import { until } from '../helpers/log-lines.js';
import { MODEL_DIR } from '../helpers/paths.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { startWorker, type WorkerProcess } from '../helpers/worker-process.js';

let server: RedisServer;
let reader: Redis;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  server = await startRedis();
  reader = new Redis(server.url);
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  reader?.disconnect();
  await server?.stop();
});

/** The registered id of the worker at `url`. */
async function idOf(url: string): Promise<string> {
  const record = (await readWorkers(reader)).find((r) => r.url === url);
  if (!record) throw new Error(`no record for ${url}`);
  return record.id;
}

const queueKeys = (id: string) => reader.keys(`${jobPrefix()}:${expertQueueName(id)}:*`);

describe("gone workers' command queues", () => {
  it('a worker starting deletes the queue of a worker killed without deregistering, and no live one', async () => {
    const killed = await startWorker('0-3', ['--redis', server.url]);
    const killedId = await idOf(killed.url);
    const live = await startWorker('4-7', ['--redis', server.url]);
    workers.push(live);
    const liveId = await idOf(live.url);
    killed.child.kill('SIGKILL');
    // Its record lapses (TTL); its queue does not.
    await until(
      'the killed worker record to lapse',
      async () => (await reader.exists(registryKeys().worker(killedId))) === 0,
      () => killed.stderr(),
      20_000,
    );
    expect(await queueKeys(killedId)).not.toEqual([]);
    // A key under the worker pattern that is not a record still keeps its queue: it may be a worker
    // of another release.
    await reader.set(registryKeys().worker('other-release'), 'not json');
    const other = new Queue(expertQueueName('other-release'), {
      connection: jobConnection(server.url),
      prefix: jobPrefix(),
    });
    await other.add('load', { op: 'load', experts: [0], fingerprint: 'another model' });
    await other.close();
    expect(await orphanQueues(reader)).toEqual([expertQueueName(killedId)]);

    const next = await startWorker('0-3', ['--redis', server.url]);
    workers.push(next);
    await until(
      "the next worker's sweep",
      () => /deleted the command queues of 1 worker\(s\) no longer registered/.test(next.stderr()),
      () => next.stderr(),
      20_000,
    );
    expect(await queueKeys(killedId)).toEqual([]);
    expect(await queueKeys(liveId)).not.toEqual([]);
    expect(await queueKeys('other-release')).not.toEqual([]);
    expect(await queueKeys(await idOf(next.url))).not.toEqual([]);
    expect(await orphanQueues(reader)).toEqual([]);
  }, 120_000);

  it('a live worker whose queue was deleted still takes the next command', async () => {
    const w = workers.find((x) => x.experts.join() === '4,5,6,7')!;
    const id = await idOf(w.url);
    expect(await deleteQueues(reader, [expertQueueName(id)])).toEqual([]);
    expect(await queueKeys(id)).toEqual([]);
    const ckpt = await Checkpoint.open(MODEL_DIR);
    const fingerprint = ckpt.fingerprint();
    await ckpt.close();
    const opts = { connection: jobConnection(server.url), prefix: jobPrefix() };
    const queue = new Queue(expertQueueName(id), opts);
    const events = new QueueEvents(expertQueueName(id), opts);
    try {
      await events.waitUntilReady();
      const job = await queue.add('load', { op: 'load', experts: [0], fingerprint });
      const result = (await job.waitUntilFinished(events, 60_000)) as { experts: number[] };
      expect(result.experts).toEqual([0, 4, 5, 6, 7]);
    } finally {
      await events.close();
      await queue.close();
    }
  }, 120_000);
});
