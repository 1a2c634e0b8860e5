// Hostile review of the registry membership's log lines, against a real redis-server: a record's
// id is quoted, a URL with hidden characters is refused, and an ignored record is named once it can
// be. Each failed at the reviewed commit (1ee49b9).

import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisMembership } from '../../../../coordinator/cluster/registry/redis-membership.js';
import { runCli } from '../../../helpers/cli.js';
import { type RedisServer, startRedis } from '../../../helpers/redis-server.js';
import { RECORD_FINGERPRINT, workerRecordJson } from '../../../helpers/worker-record.js';

const FINGERPRINT = RECORD_FINGERPRINT;

let redis: RedisServer;
let client: Redis;
let membership: RedisMembership | undefined;
const lines: string[] = [];

const record = workerRecordJson;

async function start(): Promise<RedisMembership> {
  membership = await RedisMembership.start({
    url: redis.url,
    fingerprint: FINGERPRINT,
    numExperts: 8,
    pollMs: 200,
    log: { info: (m) => lines.push(m), warn: (m) => lines.push(m) },
  });
  return membership;
}

async function until(_what: string, check: () => boolean, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
});

afterEach(async () => {
  await membership?.close();
  membership = undefined;
  await client.flushall();
  lines.length = 0;
});

afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
});

describe("a member record's join line", () => {
  it('quotes the id the record chose (a raw newline and bidi controls)', async () => {
    await client.set(
      'kmoe:worker:x',
      record({ id: 'x\u202etxt.exe\n[fake] all experts covered', url: 'ws://127.0.0.1:1' }),
      'PX',
      60_000,
    );
    await start();
    const join = lines.find((l) => l.startsWith('registry: worker'));
    expect(join).toBe(
      'registry: worker x\\u202etxt.exe\\n[fake] all experts covered (ws://127.0.0.1:1) registered with experts 0-7',
    );
  });
});

describe('a record whose URL holds a raw newline or a bidi control', () => {
  // new URL() drops tabs and newlines and percent-encodes the rest, so the URL parses; the record
  // would keep it raw. The URL rule refuses it: the record is ignored, and said so quoted.
  it.each([
    ['a newline', 'ws://127.0.0.1:1/\n[fake] all experts covered', 'U+000A'],
    ['a right-to-left override', 'ws://127.0.0.1:1/\u202eexe.txt', 'U+202E'],
    ['a zero width space', 'ws://127.0.0.1:1/a\u200bb', 'U+200B'],
  ])('is no member (%s)', async (_what, url, cp) => {
    await client.set('kmoe:worker:x', record({ id: 'x', url }), 'PX', 60_000);
    await start();
    expect(membership!.members()).toEqual([]);
    expect(lines.some((l) => l.startsWith('registry: worker'))).toBe(false);
    const ignored = lines.filter((l) => l.startsWith('registry: ignoring record kmoe:worker:x'));
    expect(ignored).toHaveLength(1);
    expect(ignored[0]).toContain(
      `url: must be a ws:// or wss:// URL (it holds white space or an invisible character (${cp}`,
    );
    expect(lines.join('').match(/[\n\u202e\u200b]/)).toBeNull();
  });
});

describe('an ignored record behind ten junk keys', () => {
  it('is named in the log at some point (it is only counted, and then remembered as logged)', async () => {
    for (let i = 0; i < 10; i++) await client.set(`kmoe:worker:aaa-junk-${i}`, 'junk', 'PX', 60_000);
    // A real worker of another model: what the operator must see to fix it.
    await client.set('kmoe:worker:real', record({ id: 'real', fingerprint: 'f'.repeat(64) }), 'PX', 60_000);
    await start();
    expect(lines.some((l) => l.includes('more ignored records'))).toBe(true);
    // The junk goes; the misconfigured worker's record stays.
    for (let i = 0; i < 10; i++) await client.del(`kmoe:worker:aaa-junk-${i}`);
    const named = await until('the real record to be named', () =>
      lines.some((l) => l.includes('ignoring record kmoe:worker:real')),
    );
    expect(named).toBe(true);
  });
});

describe('kmoe cluster status over a record a hostile writer chose', () => {
  it('prints its id and fingerprint quoted, and leaves out a record whose URL hides characters', async () => {
    // review32's repro/status-inject.sh: a forged row after a newline, ANSI escapes, a bidi override.
    await client.set(
      'kmoe:worker:zz-evil',
      record({
        id: 'evil\nforged-1                        ready     0-7  \u001b[8m',
        status: 'loading',
        fingerprint: '\u001b[31mRED\u001b[0m',
      }),
      'PX',
      60_000,
    );
    await client.set(
      'kmoe:worker:zz-url',
      record({ id: 'url', url: 'ws://127.0.0.1:1/\u202eexe.tpircs\n\u001b[2J' }),
      'PX',
      60_000,
    );
    const r = await runCli(['cluster', 'status', '--redis', redis.url]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^registry \S+: 1 worker$/m);
    expect(r.stdout).toContain('evil\\nforged-1');
    expect(r.stdout).toContain('model \\u001b[31mRED\\u001b[0m…, 8 experts');
    expect(['\u001b', '\u202e'].filter((c) => r.stdout.includes(c))).toEqual([]);
    expect(r.stdout.split('\n').some((l) => l.startsWith('forged-1'))).toBe(false);
  });
});
