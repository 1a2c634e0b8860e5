// What the coordinator's registry membership logs about the records it ignores, against a real
// redis-server: a record is named by the Redis key it was read from (not the key its id would
// have), its key and reason are quoted on one line with bidi controls escaped, and a registry
// flooded with junk keys costs a bounded number of log lines (the first few one by one, then one
// line with the count), once, not at every poll. Records of one worker URL spelt two ways are one
// member, and a late listener is told the past leaves of URLs that are not members again.

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
const warnings: string[] = [];
/** Every line, info and warnings. */
const lines: string[] = [];

const record = workerRecordJson;

async function start(pollMs?: number): Promise<RedisMembership> {
  membership = await RedisMembership.start({
    url: redis.url,
    fingerprint: FINGERPRINT,
    numExperts: 8,
    ...(pollMs === undefined ? {} : { pollMs }),
    log: {
      info: (m) => lines.push(m),
      warn: (m) => {
        warnings.push(m);
        lines.push(m);
      },
    },
  });
  return membership;
}

/** Resolves once the membership has read the registry `n` more times. */
async function reads(m: RedisMembership, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const before = m.snapshot().readAt;
    const deadline = Date.now() + 60_000;
    while (m.snapshot().readAt === before) {
      if (Date.now() > deadline) throw new Error('the membership stopped reading the registry');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; warnings:\n${warnings.join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
});

afterEach(async () => {
  await membership?.close();
  membership = undefined;
  await client.flushall();
  warnings.length = 0;
  lines.length = 0;
});

afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
});

describe('a record the membership ignores', () => {
  it('is named by the key it was read from, not by the key its id names', async () => {
    await client.set(
      'kmoe:worker:forged-key',
      record({ id: 'victim', fingerprint: 'f'.repeat(64) }),
      'PX',
      60_000,
    );
    await client.set('kmoe:worker:alias', record({ id: 'other', experts: [9] }), 'PX', 60_000);
    await start();
    // In the order of the records' ids (other, victim).
    expect(warnings).toEqual([
      'registry: ignoring record kmoe:worker:alias: lists expert 9, but the model has 8',
      expect.stringMatching(
        /^registry: ignoring record kmoe:worker:forged-key: serves another model \(fingerprint f{16}, this coordinator's a{16}\)$/,
      ),
    ]);
  });

  it('has its key and reason quoted with bidi controls escaped', async () => {
    await client.set('kmoe:worker:evil\u202egnp.exe', 'nope \u2066\u202e}', 'PX', 60_000);
    await start();
    expect(warnings).toEqual([
      expect.stringMatching(/^registry: ignoring record kmoe:worker:evil\\u202egnp\.exe: not JSON \(/),
    ]);
    expect(warnings[0]).toContain('nope \\u2066\\u202e}');
    expect(/[\u202a-\u202e\u2066-\u2069]/.test(warnings[0]!)).toBe(false);
  });
});

/** `n` keys that are not JSON, kmoe:worker:junk-000000 on, in batches of 1,000. */
/** Deletes a record and announces it, as a deregistering worker does. */
async function deregister(id: string): Promise<void> {
  await client.del(`kmoe:worker:${id}`);
  await client.publish('kmoe:events', JSON.stringify({ event: 'leave', id }));
}

async function addJunk(n: number): Promise<void> {
  for (let i = 0; i < n; i += 1000) {
    const batch = client.pipeline();
    for (let j = i; j < Math.min(n, i + 1000); j++)
      batch.set(`kmoe:worker:junk-${String(j).padStart(6, '0')}`, 'junk', 'PX', 120_000);
    await batch.exec();
  }
}

describe('a registry flooded with junk keys', () => {
  // Above the 10,000 ignored records the membership remembers between reads.
  const JUNK = 12_000;

  it('is logged in a few lines, once: the first records one by one, then one line with the count', async () => {
    await addJunk(JUNK);
    // The first read (in start) holds every junk record.
    const m = await start();
    expect(warnings).toEqual([
      ...Array.from({ length: 10 }, (_, i) =>
        expect.stringMatching(
          new RegExp(
            `^registry: ignoring record kmoe:worker:junk-${String(i).padStart(6, '0')}: not JSON \\(`,
          ),
        ),
      ),
      'registry: ... and 11,990 more ignored records (12,000 ignored in all; at most 10 are logged one by one per read, the others at later reads)',
    ]);
    // Later polls read the same records: nothing more is logged.
    await reads(m, 3);
    expect(warnings).toHaveLength(11);
    // One more junk record: it is logged; the records beyond those remembered are counted again,
    // in one line, never one line each.
    await client.set('kmoe:worker:a-new-one', 'junk', 'PX', 120_000);
    await until('the new record to be logged', () => warnings.some((w) => w.includes('a-new-one')));
    await reads(m, 2);
    const later = warnings.slice(11);
    expect(later[0]).toMatch(/^registry: ignoring record kmoe:worker:a-new-one: not JSON \(/);
    expect(later.length).toBeLessThanOrEqual(11);
    expect(later.filter((w) => w.includes('more ignored records'))).toHaveLength(later.length === 11 ? 1 : 0);
  });

  it('names no record twice while it stays ignored, however many changes follow (at most 11 lines per read)', async () => {
    await addJunk(JUNK);
    const m = await start();
    // Each change adds one record (named first: its key sorts first) and names up to 9 of the
    // records only counted so far. Records beyond the 10,000 the membership used to remember (what
    // it had counted, not only what it had named) were named again at every change.
    for (let c = 0; c < 3; c++) {
      const before = warnings.length;
      await client.set(`kmoe:worker:a-new-${c}`, 'junk', 'PX', 120_000);
      await until(`change ${c} to be logged`, () => warnings.some((w) => w.includes(`a-new-${c}`)));
      await reads(m, 2);
      expect(warnings.length - before).toBeLessThanOrEqual(11);
    }
    const named = warnings.flatMap((w) => /^registry: ignoring record (\S+):/.exec(w)?.[1] ?? []);
    expect(named.length).toBe(10 + 3 * 10);
    expect(new Set(named).size).toBe(named.length);
    // The summary counts what is still unnamed: 12,003 ignored, 40 named.
    expect(warnings.at(-1)).toMatch(
      /^registry: \.\.\. and 11,963 more ignored records \(12,003 ignored in all;/,
    );
  });
});

// From a hostile review of the log lines (each failed at 1ee49b9): a member's id is quoted, a URL
// with hidden characters is refused, an ignored record counted behind junk is named once it can be,
// and `kmoe cluster status` quotes what a writer chose.
describe("a member record's join line", () => {
  it('quotes the id the record chose (a raw newline and bidi controls)', async () => {
    await client.set(
      'kmoe:worker:x',
      record({ id: 'x\u202etxt.exe\n[fake] all experts covered', url: 'ws://127.0.0.1:1' }),
      'PX',
      60_000,
    );
    await start(200);
    const join = lines.find((l) => l.startsWith('registry: worker'));
    expect(join).toBe(
      'registry: worker x\\u202etxt.exe\\n[fake] all experts covered (ws://127.0.0.1:1) registered with experts 0-7',
    );
  });
});

describe('records of one worker URL spelt two ways', () => {
  // Workers compare the URL dialled in canonical form: `WS://127.0.0.1:7001/` reaches the worker
  // registered as `ws://127.0.0.1:7001`. Compared as text, the second record joined as another
  // worker: one process counted as two holders, a "replica" that fails with the original.
  const url = 'ws://127.0.0.1:7001';
  const alias = 'WS://127.0.0.1:7001/';

  it('are one member, joined and left under the first text, the other record quoted in the reason', async () => {
    await client.set('kmoe:worker:a', record({ id: 'a', url }), 'PX', 60_000);
    const m = await start(200);
    const joins: { url: string; reason: string }[] = [];
    const leaves: string[] = [];
    m.onJoin((e) => joins.push(e));
    m.onLeave((e) => leaves.push(e.url));
    await client.set('kmoe:worker:b', record({ id: 'b', url: alias }), 'PX', 60_000);
    await until('the second record to be read', () => joins.length > 0);
    expect(joins).toEqual([
      {
        url,
        experts: [0, 1, 2, 3, 4, 5, 6, 7],
        reason: `worker b (${alias}) registered with experts 0-7: the worker URL of member ${url}`,
      },
    ]);
    expect(m.members()).toEqual([url]);
    expect(m.memberUrl(alias)).toBe(url);
    // The first record leaves: the URL is still served, by the same process.
    await deregister('a');
    await until('the first record to be gone', () => !m.workers().some((w) => w.id === 'a'));
    expect(leaves).toEqual([]);
    expect(m.members()).toEqual([url]);
    // The last one leaves: the member leaves, under the text it joined by.
    await deregister('b');
    await until('the member to leave', () => leaves.length > 0);
    expect(leaves).toEqual([url]);
    expect(m.members()).toEqual([]);
  });
});

describe('past leaves replayed to a late listener', () => {
  // `kmoe serve --redis` listens for leaves once its engine has started, and is told the leaves
  // of that time then. A worker that left and came back at its URL (restarted; or, while serve
  // waited for workers that pass the handshake, fixed and restarted) was replayed as gone: serve
  // took it out of routing, never joined it again, and answered 503 while it ran.
  const url = 'ws://127.0.0.1:7002';
  it('leave out a URL that is a member again under the text it left by, and keep the others', async () => {
    await client.set('kmoe:worker:c', record({ id: 'c', url }), 'PX', 60_000);
    await client.set('kmoe:worker:d', record({ id: 'd', url: 'ws://127.0.0.1:7003' }), 'PX', 60_000);
    const m = await start(200);
    await until('both members', () => m.members().length === 2);
    for (const id of ['c', 'd']) await deregister(id);
    await until('both to leave', () => m.members().length === 0);
    // Both back under new ids (restarted workers'): c's URL as it was, d's spelt otherwise.
    await client.set('kmoe:worker:e', record({ id: 'e', url }), 'PX', 60_000);
    await client.set('kmoe:worker:f', record({ id: 'f', url: 'WS://127.0.0.1:7003/' }), 'PX', 60_000);
    await until('both to be back', () => m.members().length === 2);
    const replayed: string[] = [];
    m.onLeave((e) => replayed.push(e.url));
    // Before: [ws://127.0.0.1:7002, ws://127.0.0.1:7003]. The other spelling is a new member (the
    // engine and the health know workers by text): its old text's leave still stands.
    expect(replayed).toEqual(['ws://127.0.0.1:7003']);
    expect([...m.members()].sort()).toEqual(['WS://127.0.0.1:7003/', url]);
  });

  // A late listener applies the replayed leaves and then joins the members it does not know; it
  // must end with the members, by text. From a review of a version that kept past leaves by
  // canonical URL: a worker back spelt otherwise got a second slot, and one that then left for
  // good kept its first slot forever.
  const T1 = 'ws://127.0.0.1:7004';
  const T2 = 'WS://127.0.0.1:7004/';

  /** What serve's followMembership does to the engine's URL set (exact text, as RemoteExpertBackend). */
  function lateEngineSet(m: RedisMembership, placementAtStart: readonly string[]): Set<string> {
    const engine = new Set(placementAtStart);
    const known = new Set(placementAtStart);
    m.onLeave((e) => engine.delete(e.url));
    for (const u of m.members()) if (!known.has(u)) engine.add(u);
    return engine;
  }

  /** Worker a at T1 leaves, and comes back as b at T2: the engine started with T1 meanwhile. */
  async function backSpeltOtherwise(): Promise<RedisMembership> {
    await client.set('kmoe:worker:a', record({ id: 'a', url: T1 }), 'PX', 60_000);
    const m = await start(200);
    await until('a member', () => m.members().length === 1);
    await deregister('a');
    await until('a to leave', () => m.members().length === 0);
    await client.set('kmoe:worker:b', record({ id: 'b', url: T2 }), 'PX', 60_000);
    await until('b to join', () => m.members().length === 1);
    return m;
  }

  it('leave T1, join T2: the late listener ends with T2 alone, not a second slot for one worker', async () => {
    const m = await backSpeltOtherwise();
    expect(m.members()).toEqual([T2]);
    // With leaves kept by canonical URL the T1 slot stayed too.
    expect([...lateEngineSet(m, [T1])]).toEqual([T2]);
  });

  it('leave T1, join T2, leave T2: the T1 leave is replayed, so no slot stays for good', async () => {
    const m = await backSpeltOtherwise();
    await deregister('b');
    await until('b to leave', () => m.members().length === 0);
    const replayed: string[] = [];
    m.onLeave((e) => replayed.push(e.url));
    // The worker is gone for good; the engine started with T1 must be told T1 left.
    expect(replayed).toContain(T1);
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
    await start(200);
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
    await start(200);
    expect(lines.some((l) => l.includes('more ignored records'))).toBe(true);
    // The junk goes; the misconfigured worker's record stays.
    for (let i = 0; i < 10; i++) await client.del(`kmoe:worker:aaa-junk-${i}`);
    await until('the real record to be named', () =>
      lines.some((l) => l.includes('ignoring record kmoe:worker:real')),
    );
    expect(lines.filter((l) => l.includes('ignoring record kmoe:worker:real'))).toHaveLength(1);
  });
});

describe('kmoe cluster status over a record a hostile writer chose', () => {
  it('prints its id and fingerprint quoted, and leaves out a record whose URL hides characters', async () => {
    // The review's attack: a forged row after a newline, ANSI escapes, a bidi override.
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
