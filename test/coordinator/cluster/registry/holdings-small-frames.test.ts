// A worker that loads experts while connected (`kmoe cluster rebalance`'s command) fits fewer
// tokens per frame: the coordinator says the new figure (WorkerSmallFrames) from its holdings
// notice. Real redis-server, real worker processes and a real command through the worker's queue.

import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkerSmallFrames } from '../../../../coordinator/cluster/remote-expert-backend.js';
import { EngineClient } from '../../../../coordinator/engine/engine-client.js';
import {
  expertQueueName,
  jobConnection,
  jobPrefix,
} from '../../../../shared/cluster-registry/expert-jobs.js';
import { readWorkers } from '../../../../shared/cluster-registry/registry-reader.js';
import { Checkpoint } from '../../../../shared/model/checkpoint.js';
import { MODEL_DIR } from '../../../helpers/paths.js';
import { type RedisServer, startRedis } from '../../../helpers/redis-server.js';
import { startWorker, type WorkerProcess } from '../../../helpers/worker-process.js';

// 10,800 bytes: 10 fp32 tokens of the demo model sent to 4 experts each, 9 to 8.
const LIMIT_MB = '0.0103';

let redis: RedisServer;
let small: WorkerProcess;
let other: WorkerProcess;

beforeAll(async () => {
  redis = await startRedis();
  [small, other] = await Promise.all([
    startWorker('0-3', ['--redis', redis.url, '--max-frame-mb', LIMIT_MB]),
    startWorker('4-7', ['--redis', redis.url]),
  ]);
}, 120_000);

afterAll(async () => {
  await Promise.all([small?.stop(), other?.stop()]);
  await redis?.stop();
});

describe('small frames after a holdings change', () => {
  it('are said again with the new figure when the worker loads experts', async () => {
    const engine = await EngineClient.start({
      modelDir: MODEL_DIR,
      settings: { device: 'cpu', threads: 1, expertWeights: 'fp32' },
      experts: { kind: 'remote', workers: [small.url, other.url], wireDtype: 'fp32' },
    });
    const reader = new Redis(redis.url);
    const id = (await readWorkers(reader)).find((r) => r.url === small.url)!.id;
    const opts = { connection: jobConnection(redis.url), prefix: jobPrefix() };
    const queue = new Queue(expertQueueName(id), opts);
    const events = new QueueEvents(expertQueueName(id), opts);
    try {
      const said: WorkerSmallFrames[] = [];
      engine.onWorkerSmallFrames((e) => said.push(e));
      expect(said.map((e) => [e.url, e.tokens, e.held])).toEqual([[small.url, 10, 4]]);
      const ckpt = await Checkpoint.open(MODEL_DIR);
      const fingerprint = ckpt.fingerprint();
      await ckpt.close();
      await events.waitUntilReady();
      const job = await queue.add('load', { op: 'load', experts: [4, 5, 6, 7], fingerprint });
      expect(((await job.waitUntilFinished(events, 60_000)) as { experts: number[] }).experts).toEqual([
        0, 1, 2, 3, 4, 5, 6, 7,
      ]);
      // The notice reaches the engine after the command's result: waited for, not slept for.
      for (const deadline = Date.now() + 10_000; said.length < 2 && Date.now() < deadline; )
        await new Promise((r) => setTimeout(r, 50));
      expect(said.map((e) => [e.url, e.tokens, e.held])).toEqual([
        [small.url, 10, 4],
        [small.url, 9, 8],
      ]);
    } finally {
      await events.close();
      await queue.close();
      reader.disconnect();
      await engine.close();
    }
  }, 120_000);
});
