// How `kmoe serve --redis` starts: it waits until registered workers cover every expert, dials
// those that accept TCP, and starts on the ones that complete the handshake. Records that pass the
// first two checks can still fail the third (a relay refused for the URL it registered, a stale
// record whose port another process took, a worker of another model): when the workers left out
// held experts no one else holds, the start waits and tries again, as it does for records that
// do not answer, instead of exiting (under a restarting supervisor, a restart loop). Any other
// failure of the start (a broken checkpoint, a bad option) still ends it.

import { POLL_MS } from '../../../shared/cluster-registry/keys.js';
import type { ErrorDetails } from '../../../shared/errors/kmoe-error.js';
import { formatExpertSet } from '../../../shared/protocol/expert-set.js';
import { ChangingLine, LineBudget } from '../../../shared/runtime/line-budget.js';
import { printable } from '../../../shared/text/printable.js';
import { reachableWorkers } from './reachable.js';
import type { RedisMembership } from './redis-membership.js';

/** The longest wait between two starts that failed the same way; a change of members ends it early. */
export const START_RETRY_MAX_MS = 30_000;

/**
 * The shortest wait between two starts, even when the records change: each start costs an engine
 * thread (about half a second of CPU on the tiny model), and records are anyone's to rewrite.
 */
export const START_RETRY_MIN_MS = 3_000;

/** How often the members are compared while waiting to start again. */
const MEMBERS_CHECK_MS = 200;

export interface RegistryStartLog {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
}

/**
 * Whether a failed start is the workers' handshakes leaving experts uncovered: a placement error
 * (by its code, as it crosses the engine thread) that names missing experts.
 */
export function uncoveredAtStart(err: unknown): boolean {
  const e = err as { code?: unknown; details?: ErrorDetails } | undefined;
  const missing = e?.details?.missing;
  return e?.code === 'placement' && Array.isArray(missing) && missing.length > 0;
}

/** Unreachable URLs quoted in the waiting line (100 characters each); the rest are counted. */
const UNREACHABLE_QUOTED = 8;

export const UNREACHABLE_LINE =
  'registered workers do not accept a connection, and those that do hold too few experts; waiting';

/**
 * What the wait has logged, so that it says each thing once (until the records change). Each
 * line's text is the records' and the peers' to change (a URL, a refusal's message): a changed
 * text is said at once three times, then at most once per START_RETRY_MAX_MS, with the count of
 * changes not logged (changesNotLogged). Before, a record rewritten every second gave a line a second.
 */
interface Said {
  readonly uncovered: ChangingLine;
  readonly unreachable: ChangingLine;
}

const SAID_AT_ONCE = 3;

/** The fields of a line said after `held` changed lines were not (LineBudget). */
function notLogged(held: number): { changesNotLogged?: number } {
  return held > 0 ? { changesNotLogged: held } : {};
}

/**
 * Starts (`start`, given the URLs to dial) once registered workers cover every expert and complete
 * their handshakes; resolves with what `start` returned, or with the signal if `stop` came first
 * (a start under way then ends first, bounded by the handshake timeout, and what it started is
 * given to `dispose`).
 */
export async function startFromRegistry<T>(o: {
  readonly members: RedisMembership;
  readonly numExperts: number;
  readonly start: (urls: readonly string[]) => Promise<T>;
  readonly dispose: (started: T) => Promise<void>;
  readonly stop: Promise<NodeJS.Signals>;
  readonly log: RegistryStartLog;
}): Promise<{ readonly started: T } | { readonly signal: NodeJS.Signals }> {
  const { members, log } = o;
  const stopped = o.stop.then((signal) => ({ signal }));
  let retryMs = START_RETRY_MIN_MS;
  const said: Said = {
    uncovered: new ChangingLine(new LineBudget(SAID_AT_ONCE, START_RETRY_MAX_MS)),
    unreachable: new ChangingLine(new LineBudget(SAID_AT_ONCE, START_RETRY_MAX_MS)),
  };
  for (;;) {
    const waiting = reachable(o.members, o.numExperts, log, said);
    // On a signal the wait ends with the membership closed by the caller: nothing left to report.
    waiting.catch(() => {});
    const urls = await Promise.race([waiting, stopped]);
    if (!Array.isArray(urls)) return urls as { signal: NodeJS.Signals };
    const seen = signature(members);
    const attempt = o.start(urls).then(
      (started) => ({ started }),
      (err: unknown) => ({ err }),
    );
    const first = await Promise.race([attempt, stopped]);
    if ('signal' in first) {
      log.info(
        { signal: first.signal },
        'stopping once the start under way ends (its handshakes are bounded by their timeout)',
      );
      const late = await attempt;
      if ('started' in late) await o.dispose(late.started);
      return first;
    }
    if ('started' in first) return first;
    const { err } = first;
    if (!uncoveredAtStart(err)) throw err;
    const message = (err as Error).message;
    // Said once per reason while the records stay the same: a wait of hours would otherwise log a
    // line every 30 s; after a change the same reason is said again (the operator's fix failed).
    const held = said.uncovered.offer(message);
    if (held !== undefined)
      log.warn(
        { err: message, ...notLogged(held) },
        'the registered workers that complete the handshake do not cover every expert: serve starts once they do; retrying',
      );
    const waited = await Promise.race([membersChange(members, seen, retryMs), stopped]);
    if (typeof waited === 'object') return waited;
    if (waited) said.uncovered.forget();
    retryMs = waited ? START_RETRY_MIN_MS : Math.min(START_RETRY_MAX_MS, retryMs * 2);
  }
}

/** The URLs of registered workers that accept TCP, once they cover every expert. */
async function reachable(
  members: RedisMembership,
  numExperts: number,
  log: RegistryStartLog,
  said: Said,
): Promise<readonly string[]> {
  for (;;) {
    await members.waitForCoverage(Number.POSITIVE_INFINITY, (missing) =>
      log.info({ missing }, 'experts not yet held by a registered worker'),
    );
    // A record outlives its worker by up to a TTL: start with the workers that answer.
    const r = await reachableWorkers(members.workers(), numExperts);
    // One URL once, as the membership names it: a worker restarted at its old URL may still have
    // its old record too, and two records may spell one URL two ways.
    if (r.missing.length === 0) return [...new Set(r.reachable.map((w) => members.memberUrl(w.url)))];
    // Polled every second; said once per set of URLs and errors (a wrong --advertise-url stays
    // wrong for as long as its worker heartbeats).
    // Records are anyone's to write: URLs of up to 2,048 characters each, any number of them.
    const text = JSON.stringify(r.unreachable);
    const held = said.unreachable.offer(text);
    if (held !== undefined) {
      const more = r.unreachable.length - UNREACHABLE_QUOTED;
      log.warn(
        {
          missing: formatExpertSet(r.missing),
          unreachable: r.unreachable
            .slice(0, UNREACHABLE_QUOTED)
            .map((u) => `${printable(u.url, 100)}: ${printable(u.err, 200)}`),
          ...(more > 0 ? { more } : {}),
          ...notLogged(held),
        },
        UNREACHABLE_LINE,
      );
    }
    await new Promise((res) => setTimeout(res, POLL_MS));
  }
}

/** The registered records as the start reads them: which, where, what they hold, since when. */
function signature(members: RedisMembership): string {
  return JSON.stringify(members.workers().map((w) => [w.id, w.url, w.experts, w.status, w.startedAt]));
}

/**
 * Resolves true once the records differ from `seen` (but not before START_RETRY_MIN_MS), false
 * after `ms` if they do not.
 */
async function membersChange(members: RedisMembership, seen: string, ms: number): Promise<boolean> {
  const earliest = Date.now() + START_RETRY_MIN_MS;
  const deadline = Date.now() + Math.max(ms, START_RETRY_MIN_MS);
  while (Date.now() < deadline) {
    // Unref'd: a signal ends the start without waiting for this loop to see its deadline.
    await new Promise((res) => setTimeout(res, Math.min(MEMBERS_CHECK_MS, deadline - Date.now())).unref());
    if (Date.now() >= earliest && signature(members) !== seen) return true;
  }
  return false;
}
