// startFromRegistry (the start of `kmoe serve --redis`) against a stand-in membership: what it logs
// while records do not accept a connection. From a hostile review; the test failed on the code
// before it, as its comment says.

import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { RedisMembership } from '../../../../coordinator/cluster/registry/redis-membership.js';
import {
  startFromRegistry,
  UNREACHABLE_LINE,
} from '../../../../coordinator/cluster/registry/registry-start.js';
import { parseWorkerRecord, type WorkerRecord } from '../../../../shared/cluster-registry/record.js';
import { workerRecordJson } from '../../../helpers/worker-record.js';

/** A port where nothing listens (bound, then released): connections are refused at once. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

function record(id: string, url: string): WorkerRecord {
  return parseWorkerRecord(workerRecordJson({ id, url }))!;
}

/** The part of RedisMembership the start reads, over a fixed list of records. */
function members(records: () => readonly WorkerRecord[]): RedisMembership {
  return {
    waitForCoverage: async () => {},
    workers: records,
    memberUrl: (url: string) => url,
  } as unknown as RedisMembership;
}

function logger() {
  const lines: { level: string; fields: object; msg: string }[] = [];
  return {
    lines,
    log: {
      info: (fields: object, msg: string) => lines.push({ level: 'info', fields, msg }),
      warn: (fields: object, msg: string) => lines.push({ level: 'warn', fields, msg }),
    },
  };
}

/** startFromRegistry over `records`, starting nothing; its log lines and a stop that signals it. */
function waitingStart(records: () => readonly WorkerRecord[]) {
  const { lines, log } = logger();
  let signal!: (s: NodeJS.Signals) => void;
  const stop = new Promise<NodeJS.Signals>((r) => {
    signal = r;
  });
  const started = startFromRegistry({
    members: members(records),
    numExperts: 8,
    start: async () => 'x',
    dispose: async () => {},
    stop,
    log,
  });
  return { lines, started, stop: () => signal('SIGTERM') };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('startFromRegistry while registered records do not accept a connection', () => {
  it('says so once per set of unanswered records, with at most 8 URLs quoted', async () => {
    const port = await closedPort();
    let records = Array.from({ length: 20 }, (_, i) =>
      record(`r${i}`, `ws://127.0.0.1:${port}/${i}-${'a'.repeat(1500)}`),
    );
    const { lines, started, stop } = waitingStart(() => records);
    await sleep(3_500);
    // Before: a line per poll (every second), each quoting all 20 URLs of 1,500+ characters.
    const said = () => lines.filter((l) => l.msg === UNREACHABLE_LINE);
    expect(said()).toHaveLength(1);
    const first = said()[0]!.fields as { unreachable: string[]; more?: number; missing: string };
    // Which experts the start waits for (every record here is unreachable).
    expect(first.missing).toBe('0-7');
    expect(first.unreachable).toHaveLength(8);
    expect(first.more).toBe(12);
    expect(first.unreachable[0]).toMatch(
      /^ws:\/\/127\.0\.0\.1:\d+\/0-a+…: connect ECONNREFUSED 127\.0\.0\.1:\d+$/,
    );
    expect(JSON.stringify(first).length).toBeLessThan(8 * 160 + 200);
    // Another set: said again.
    records = records.slice(0, 5);
    // The next poll (every second) says it; waited for, not slept for, so a busy machine passes.
    const deadline = Date.now() + 10_000;
    while (said().length < 2 && Date.now() < deadline) await sleep(100);
    expect(said()).toHaveLength(2);
    stop();
    expect(await started).toEqual({ signal: 'SIGTERM' });
  }, 20_000);

  it('says at most 3 changed sets at once, however often the records change', async () => {
    const port = await closedPort();
    let n = 0;
    // A record rewritten under a new URL every 300 ms: every poll (each second) sees a new set.
    const churn = setInterval(() => n++, 300);
    try {
      const { lines, started, stop } = waitingStart(() => [record('r', `ws://127.0.0.1:${port}/${n}`)]);
      await sleep(6_000);
      const said = lines.filter((l) => l.msg === UNREACHABLE_LINE);
      // Before: a line per poll, 6 here (and one a second for as long as the churn goes on).
      expect(n).toBeGreaterThan(10);
      expect(said).toHaveLength(3);
      stop();
      expect(await started).toEqual({ signal: 'SIGTERM' });
    } finally {
      clearInterval(churn);
    }
  }, 20_000);
});
