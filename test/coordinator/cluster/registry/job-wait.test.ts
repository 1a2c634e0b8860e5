// addAndWait against a real redis-server and a real BullMQ worker: jobs finished before or while
// the wait listens are seen, a job whose completion event never arrives is seen by polling (a
// missed event once left `kmoe cluster rebalance` waiting 60 s for an unload done in
// milliseconds), failures come back as errors, and a job no worker takes times out.

import { Job, Queue, Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addAndWait } from '../../../../coordinator/cluster/rebalance/job-wait.js';
import { type RedisServer, startRedis } from '../../../helpers/redis-server.js';

let redis: RedisServer;

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
});

/** Polls a job until a worker has settled it. */
async function settled(queue: Queue, id: string): Promise<void> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
    const state = await (await Job.fromId(queue, id))?.getState();
    if (state === 'completed' || state === 'failed') return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`job ${id} not settled`);
}

describe('addAndWait', () => {
  const connection = () => ({ url: redis.url, maxRetriesPerRequest: null });

  it('sees a job finished before the wait begins, and a failure as an error', async () => {
    const opts = { connection: connection(), prefix: 'test-jobs' };
    const queue = new Queue<{ n: number }, { twice: number }>('fast', opts);
    const worker = new Worker<{ n: number }, { twice: number }>(
      'fast',
      async (job) => {
        if (job.data.n < 0) throw new Error(`negative: ${job.data.n}`);
        return { twice: job.data.n * 2 };
      },
      opts,
    );
    try {
      for (let round = 0; round < 40; round++) {
        const started = Date.now();
        const outcome = await addAndWait(
          queue,
          opts,
          async (q) => {
            const job = await q.add('double', { n: round });
            // Every other round the job is done before addAndWait starts waiting for it.
            if (round % 2 === 0) await settled(q, job.id!);
            return job;
          },
          30_000,
        );
        expect(outcome).toMatchObject({ result: { twice: round * 2 } });
        // Announced, not timed out.
        expect(Date.now() - started).toBeLessThan(30_000);
      }
      const failed = await addAndWait(queue, opts, (q) => q.add('double', { n: -1 }), 30_000);
      expect('error' in failed && String(failed.error)).toMatch(/negative: -1/);
    } finally {
      await worker.close();
      await queue.close();
    }
  });

  it('still sees a job whose completion event it never gets (its state is polled)', async () => {
    const opts = { connection: connection(), prefix: 'test-jobs' };
    const queue = new Queue<{ n: number }, { twice: number }>('unheard', opts);
    const worker = new Worker<{ n: number }, { twice: number }>(
      'unheard',
      async (job) => ({ twice: job.data.n * 2 }),
      opts,
    );
    try {
      // The events are read from another prefix's stream: no event for this job ever arrives.
      const deaf = { connection: connection(), prefix: 'elsewhere' };
      const outcome = await addAndWait(queue, deaf, (q) => q.add('double', { n: 21 }), 30_000);
      expect(outcome).toMatchObject({ result: { twice: 42 } });
    } finally {
      await worker.close();
      await queue.close();
    }
  });

  it('times out a job no worker takes', async () => {
    const opts = { connection: connection(), prefix: 'test-jobs' };
    const queue = new Queue<{ n: number }, unknown>('nobody', opts);
    try {
      const outcome = await addAndWait(queue, opts, (q) => q.add('x', { n: 1 }), 500);
      expect('error' in outcome && String(outcome.error)).toMatch(/timed out/);
    } finally {
      await queue.close();
    }
  });
});
