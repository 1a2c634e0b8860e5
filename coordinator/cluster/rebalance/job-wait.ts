// Adding a BullMQ job and waiting for its outcome without missing a fast one. A wait that relies on
// the completion event alone missed one in CI: `kmoe cluster rebalance` waited 60 s for an unload
// the worker had finished in milliseconds. QueueEvents reads the event stream from where it stands
// at its first blocking read, which comes after it reports ready, so an event written in between is
// never seen. Here the events are read from the stream's last entry before the job is added, and
// the job's own state is polled as well: whichever says first.

import { Job, type Queue, QueueEvents, type QueueEventsOptions } from 'bullmq';
import type { Redis } from 'ioredis';

/** How often the job's state is read besides listening for its events. */
const POLL_MS = 1000;

export type JobOutcome<D, R> = { job: Job<D, R>; result: R } | { job: Job<D, R>; error: Error };

/**
 * `add(queue)` adds the job; resolves with its return value or its failure, or a timeout error
 * after `timeoutMs`. `eventsOptions`: the queue's connection and prefix.
 */
export async function addAndWait<D, R>(
  queue: Queue<D, R>,
  eventsOptions: QueueEventsOptions,
  add: (queue: Queue<D, R>) => Promise<Job<D, R>>,
  timeoutMs: number,
): Promise<JobOutcome<D, R>> {
  // BullMQ's Redis backend runs on ioredis; its own client type lists only the commands it uses.
  const client = (await queue.backend.client) as unknown as Redis;
  const [last] = await client.xrevrange(queue.keys.events!, '+', '-', 'COUNT', 1);
  const events = new QueueEvents(queue.name, { ...eventsOptions, lastEventId: last?.[0] ?? '0-0' });
  try {
    await events.waitUntilReady();
    const job = await add(queue);
    const id = job.id!;
    return await new Promise<JobOutcome<D, R>>((resolve) => {
      let done = false;
      const finish = (outcome: JobOutcome<D, R>): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearInterval(poll);
        events.off('completed', onCompleted);
        events.off('failed', onFailed);
        resolve(outcome);
      };
      const onCompleted = (args: { jobId: string; returnvalue: unknown }) => {
        if (args.jobId === id) finish({ job, result: args.returnvalue as R });
      };
      const onFailed = (args: { jobId: string; failedReason: string }) => {
        if (args.jobId === id) finish({ job, error: new Error(args.failedReason) });
      };
      events.on('completed', onCompleted);
      events.on('failed', onFailed);
      const check = async (): Promise<void> => {
        // State first, then the job: read the other way round, a job completing in between shows
        // as completed with the return value it did not have yet.
        const state = await queue.getJobState(id);
        if (state !== 'completed' && state !== 'failed') return;
        const fresh = await Job.fromId<D, R>(queue, id);
        if (!fresh) return;
        if (state === 'completed') finish({ job, result: fresh.returnvalue });
        else finish({ job, error: new Error(fresh.failedReason) });
      };
      // A failed read is retried at the next poll; the events may still answer first.
      const poll = setInterval(() => void check().catch(() => {}), POLL_MS);
      void check().catch(() => {});
      const timer = setTimeout(
        () =>
          finish({
            job,
            error: new Error(`job ${job.name} (id ${id}) timed out: no outcome within ${timeoutMs} ms`),
          }),
        timeoutMs,
      );
    });
  } finally {
    await events.close();
  }
}
