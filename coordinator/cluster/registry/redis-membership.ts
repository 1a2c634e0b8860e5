// Membership from the Redis registry: the ready workers of this model, with joins and leaves while
// the coordinator serves. The registry is polled every second (the source of truth: a record that
// expired is gone) and pub/sub events from registering and deregistering workers trigger an
// immediate re-read, so a join is seen in milliseconds and a lost event costs at most one poll.
// While Redis is unreachable the last known membership stands; after it comes back, a missing
// record counts as gone only after a full TTL (workers re-register on their next heartbeat).

import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  DEFAULT_PREFIX,
  POLL_MS,
  registryKeys,
  WORKER_TTL_MS,
} from '../../../shared/cluster-registry/keys.js';
import { parseRegistryEvent, type WorkerRecord } from '../../../shared/cluster-registry/record.js';
import { connectRegistry } from '../../../shared/cluster-registry/redis-connection.js';
import { readRegistry } from '../../../shared/cluster-registry/registry-reader.js';
import { formatExpertSet } from '../../../shared/protocol/expert-set.js';
import { canonicalWorkerUrl } from '../../../shared/protocol/worker-url.js';
import { setLatest } from '../../../shared/runtime/latest.js';
import { maskUrl } from '../../../shared/runtime/mask-url.js';
import { printable } from '../../../shared/text/printable.js';
import type { MemberJoined, MemberLeft, Membership } from '../membership.js';

const MAX_REMEMBERED_LEAVES = 1000;
/** Ignored records logged one by one per read; the others not logged before are counted in one line. */
const IGNORED_LOGGED_PER_READ = 10;
/**
 * Ignored records remembered as named between reads (as digests of key and reason), so that no
 * read names them again. Beyond this many, new ones are only counted (in the one line) when the
 * set of ignored records changes: the memory stays bounded whatever a registry holds.
 */
const IGNORED_REMEMBERED = 10_000;

export interface RegistryLog {
  info(message: string): void;
  warn(message: string): void;
}

export interface RedisMembershipOptions {
  readonly url: string;
  /** PEM CA certificate(s) for a rediss:// URL (see RegistryConnectionOptions.ca). */
  readonly ca?: string;
  /** Only workers of this model (handshake fingerprint) are members. */
  readonly fingerprint: string;
  readonly numExperts: number;
  readonly prefix?: string;
  readonly pollMs?: number;
  readonly ttlMs?: number;
  readonly log: RegistryLog;
}

export class RedisMembership implements Membership {
  /** Members by worker id: ready records of this model. */
  private known = new Map<string, WorkerRecord>();
  /**
   * The members' worker URLs: canonical form (as workers compare the URL dialled) -> the text the
   * member goes by, its first record's. Records naming one URL spelt otherwise (`WS://h:1/` and
   * `ws://h:1`) reach one process: one member, joined and left under that one text.
   */
  private urls = new Map<string, string>();
  /** Every record seen at the last successful read (any model, any status), for `cluster status`. */
  private all: WorkerRecord[] = [];
  private readonly joinListeners: ((e: MemberJoined) => void)[] = [];
  private readonly leaveListeners: ((e: MemberLeft) => void)[] = [];
  /**
   * Past leaves, replayed to late listeners, by the text the member went by (the engine and the
   * cluster health know workers by that text): only URLs not members again under that text (a
   * leave followed by a join of it is dropped, or a late listener would take the worker now
   * registered there out of routing). A worker back under another spelling is a new member: its
   * old text's leave is replayed, and it is joined under the new one.
   */
  private readonly left = new Map<string, MemberLeft>();
  /** Ids that announced their leave (deregistered): gone at once, no TTL grace. */
  private readonly deregistered = new Set<string>();
  /** When the connection last became ready: absences count only a TTL after it. */
  private readySince = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<void> | undefined;
  private again = false;
  private readFailing = false;
  private lastRead = 0;
  private closed = false;
  /**
   * The ignored records named in a log line of their own and still ignored at the last read (key
   * and why), as digests: each is named once (again only if its reason changes), not at every
   * poll. At most IGNORED_REMEMBERED of them.
   */
  private ignoredSeen = new Set<string>();
  /** Digest of every record ignored at the last read: an unchanged set logs nothing, however large. */
  private ignoredDigest = '';

  private constructor(
    private readonly o: RedisMembershipOptions,
    private readonly redis: Redis,
    private readonly sub: Redis,
  ) {}

  /** Connects (fails with a RegistryError if Redis is unreachable now), reads once, starts watching. */
  static async start(o: RedisMembershipOptions): Promise<RedisMembership> {
    const masked = maskUrl(o.url);
    let m: RedisMembership | undefined;
    const tls = o.ca === undefined ? {} : { ca: o.ca };
    const redis = await connectRegistry(o.url, {
      ...tls,
      onError: (msg) => o.log.warn(`registry unreachable, serving with the last known workers: ${msg}`),
      onReady: () => {
        o.log.info(`registry ${masked} reachable again: resyncing`);
        if (m) m.readySince = Date.now();
        m?.refresh();
      },
    });
    let sub: Redis;
    try {
      sub = await connectRegistry(o.url, tls);
    } catch (err) {
      redis.disconnect();
      throw err;
    }
    m = new RedisMembership(o, redis, sub);
    const keys = registryKeys(o.prefix ?? DEFAULT_PREFIX);
    sub.on('message', (_channel: string, message: string) => {
      const e = parseRegistryEvent(message);
      if (!e) return;
      if (e.event === 'leave') m.deregistered.add(e.id);
      m.refresh();
    });
    await sub.subscribe(keys.events);
    // The first read may not wait for a TTL: nothing is known yet.
    m.readySince = 0;
    await m.read();
    m.readySince = Date.now();
    m.timer = setInterval(() => m.refresh(), o.pollMs ?? POLL_MS);
    m.timer.unref();
    return m;
  }

  members(): readonly string[] {
    return [...this.urls.values()];
  }

  /** The text the member a record's `url` reaches goes by (`url` itself if none does). */
  memberUrl(url: string): string {
    return this.urls.get(canonicalWorkerUrl(url)) ?? url;
  }

  /** The members' records (ready workers of this model), by id. */
  workers(): readonly WorkerRecord[] {
    return [...this.known.values()];
  }

  /** Every record at the last successful read, and when that was (ms since the epoch, 0 = never). */
  snapshot(): { readonly records: readonly WorkerRecord[]; readonly readAt: number } {
    return { records: this.all, readAt: this.lastRead };
  }

  /** Whether the members hold every expert of the model. */
  covered(): boolean {
    const held = new Uint8Array(this.o.numExperts);
    for (const w of this.known.values()) for (const e of w.experts) if (e < held.length) held[e] = 1;
    return held.every((h) => h === 1);
  }

  /** Resolves when the members cover every expert (re-checked at each read), or rejects at the timeout. */
  async waitForCoverage(timeoutMs: number, onWait: (missing: string) => void): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let said = '';
    for (;;) {
      if (this.closed) throw new Error('the registry membership was closed while waiting for coverage');
      if (this.covered()) return;
      const held = new Uint8Array(this.o.numExperts);
      for (const w of this.known.values()) for (const e of w.experts) held[e] = 1;
      const missing = formatExpertSet([...held].flatMap((h, e) => (h ? [] : [e])));
      if (missing !== said) onWait(missing);
      said = missing;
      if (Date.now() > deadline) throw new Error(`experts ${missing} are held by no registered worker`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  onJoin(listener: (e: MemberJoined) => void): void {
    this.joinListeners.push(listener);
  }

  onLeave(listener: (e: MemberLeft) => void): void {
    for (const e of this.left.values()) listener(e);
    this.leaveListeners.push(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.reading;
    this.sub.disconnect();
    this.redis.disconnect();
  }

  /** Re-reads now, or right after the read in progress. */
  private refresh(): void {
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = this.read().finally(() => {
      this.reading = undefined;
      if (this.again) {
        this.again = false;
        this.refresh();
      }
    });
  }

  /** Why a ready record is not a member of this coordinator's cluster, if it is not. */
  private memberProblem(r: WorkerRecord): string | undefined {
    if (r.url === '') return 'ready without a URL';
    if (r.fingerprint !== this.o.fingerprint)
      return `serves another model (fingerprint ${r.fingerprint.slice(0, 16)}, this coordinator's ${this.o.fingerprint.slice(0, 16)})`;
    const bad = r.experts.find((e) => e >= this.o.numExperts);
    if (bad !== undefined) return `lists expert ${bad}, but the model has ${this.o.numExperts}`;
    return undefined;
  }

  /**
   * Logs the ignored records not named yet (or ignored for another reason now): at most
   * IGNORED_LOGGED_PER_READ one by one, the others in one line with their count, so a registry
   * flooded with junk keys costs at most IGNORED_LOGGED_PER_READ + 1 lines per read, and nothing
   * while the set of ignored records stays the same. Only a record named in its own line is
   * remembered as logged: one that was only counted is named at a later read (the next change),
   * and a record that is no longer ignored is forgotten. A record is named only if it can be
   * remembered (at most IGNORED_REMEMBERED, those named before and still ignored first), so none
   * is named twice while it stays ignored; past that, new ones are only counted.
   */
  private logIgnored(ignored: ReadonlyMap<string, string>): void {
    // The map's order follows the registry's contents (keys sorted, then records by id), so the
    // same records give the same digest.
    const whole = createHash('sha256');
    for (const [key, problem] of ignored) whole.update(`${key.length}:${key}${problem.length}:${problem}`);
    const digest = whole.digest('base64');
    if (digest === this.ignoredDigest) return;
    const digests = [...ignored].map(([key, problem]) =>
      createHash('sha256').update(`${key.length}:${key}${problem}`).digest('base64'),
    );
    // Named before and still ignored: remembered again (at most IGNORED_REMEMBERED, as before).
    const seen = new Set(digests.filter((d) => this.ignoredSeen.has(d)));
    let logged = 0;
    let unlogged = 0;
    let i = 0;
    for (const [key, problem] of ignored) {
      const d = digests[i++]!;
      if (seen.has(d)) continue;
      if (logged < IGNORED_LOGGED_PER_READ && seen.size < IGNORED_REMEMBERED) {
        this.o.log.warn(`registry: ignoring record ${printable(key)}: ${printable(problem, 500)}`);
        seen.add(d);
        logged++;
      } else unlogged++;
    }
    if (unlogged > 0)
      this.o.log.warn(
        `registry: ... and ${unlogged.toLocaleString('en-US')} more ignored records (${ignored.size.toLocaleString('en-US')} ignored in all; at most ${IGNORED_LOGGED_PER_READ} are logged one by one per read, the others at later reads)`,
      );
    this.ignoredSeen = seen;
    this.ignoredDigest = digest;
  }

  private async read(): Promise<void> {
    let read: Awaited<ReturnType<typeof readRegistry>>;
    try {
      read = await readRegistry(this.redis, this.o.prefix);
    } catch (err) {
      if (!this.readFailing)
        this.o.log.warn(
          `registry read failed, keeping ${this.known.size} known workers: ${(err as Error).message}`,
        );
      this.readFailing = true;
      return;
    }
    this.readFailing = false;
    this.all = read.records.map((r) => r.record);
    this.lastRead = Date.now();
    const ignored = new Map(read.unreadable.map((u) => [u.key, u.problem]));
    const now = new Map<string, WorkerRecord>();
    for (const { key, record: r } of read.records) {
      if (r.status !== 'ready') continue;
      const problem = this.memberProblem(r);
      if (problem === undefined) now.set(r.id, r);
      // The key it was read from: a record's id need not match its key (a hand-written or forged
      // record), and the key is what an operator deletes.
      else ignored.set(key, problem);
    }
    this.logIgnored(ignored);
    const trustAbsence = Date.now() - this.readySince >= (this.o.ttlMs ?? WORKER_TTL_MS);
    // A record's id is any text its writer chose (its URL passed workerUrlProblem, which refuses
    // white space and invisible characters): both are quoted in the reasons, which are logged.
    const leaves: MemberLeft[] = [];
    const next = new Map<string, WorkerRecord>();
    for (const [id, old] of this.known) {
      const cur = now.get(id);
      // Same worker, same URL: still a member even if its experts changed (`kmoe cluster
      // rebalance`); the coordinator learns those from the worker's holdings notice on the connection.
      if (cur && cur.url === old.url) {
        next.set(id, cur);
        continue;
      }
      if (!cur && !this.deregistered.has(id) && !trustAbsence) {
        next.set(id, old);
        continue;
      }
      const why = cur
        ? 'changed its record'
        : this.deregistered.has(id)
          ? 'deregistered'
          : 'heartbeat expired';
      const reason = `worker ${printable(id)} (${printable(old.url)}) ${why}`;
      leaves.push(
        why === 'heartbeat expired' ? { url: old.url, reason, expired: true } : { url: old.url, reason },
      );
    }
    const joins: MemberJoined[] = [];
    for (const [id, cur] of now) {
      if (next.has(id)) continue;
      next.set(id, cur);
      joins.push({
        url: cur.url,
        experts: cur.experts,
        reason: `worker ${printable(id)} (${printable(cur.url)}) registered with experts ${formatExpertSet(cur.experts)}`,
      });
    }
    for (const id of this.deregistered) if (!now.has(id)) this.deregistered.delete(id);
    // A worker restarted at the same URL registers under a new id before its old record expires:
    // the old id leaving must not take the URL, which a member still serves, out of routing. The
    // same for another record of that URL spelt otherwise. A URL leaves under the text it joined by.
    const served = new Set([...next.values()].map((r) => canonicalWorkerUrl(r.url)));
    const departing = new Map<string, MemberLeft>();
    for (const l of leaves) {
      const c = canonicalWorkerUrl(l.url);
      if (served.has(c) || departing.has(c)) continue;
      departing.set(c, { ...l, url: this.urls.get(c) ?? l.url });
      this.urls.delete(c);
    }
    leaves.splice(0, leaves.length, ...departing.values());
    // A record of a member's URL spelt otherwise joins as that member (no second worker); its own
    // text stays in the reason, for people.
    for (const [i, j] of joins.entries()) {
      const c = canonicalWorkerUrl(j.url);
      const member = this.urls.get(c);
      if (member === undefined) this.urls.set(c, j.url);
      else if (member !== j.url)
        joins[i] = {
          ...j,
          url: member,
          reason: `${j.reason}: the worker URL of member ${printable(member)}`,
        };
    }
    this.known = next;
    // Leaves first: a worker restarted on the same URL leaves (old id) and then joins (new id).
    for (const e of leaves) {
      this.o.log.info(`registry: ${e.reason}`);
      // By the text it left under: the engine and the cluster health know workers by that text.
      // Past leaves are replayed to late listeners; a long-running cluster keeps only recent ones.
      setLatest(this.left, e.url, e, MAX_REMEMBERED_LEAVES);
      for (const l of this.leaveListeners) l(e);
    }
    for (const e of joins) {
      this.left.delete(e.url);
      this.o.log.info(`registry: ${e.reason}`);
      for (const l of this.joinListeners) l(e);
    }
  }
}
