// The Redis layout of the cluster registry, in one place (BullMQ keeps its scripts apart from the
// classes that run them; so do we): key names, the events channel, timings and the Lua scripts.
// Workers and coordinators both import it; nothing else spells a key.

/** Every key starts with this, so one Redis can host other data (or other clusters, by prefix). */
export const DEFAULT_PREFIX = 'kmoe:';

/** A worker's record lives this long unless its heartbeat refreshes it. */
export const WORKER_TTL_MS = 5000;
/** How often a registered worker refreshes its record (and its load figures). */
export const HEARTBEAT_MS = 1000;
/** How often a coordinator re-reads the registry (the source of truth; events only make it sooner). */
export const POLL_MS = 1000;
/** How long a worker running `--experts auto` may hold the choice lock. */
export const AUTO_LOCK_MS = 10_000;

export interface RegistryKeys {
  /** `kmoe:worker:<id>`: the worker's JSON record (WorkerRecord), with a PX TTL. */
  worker(id: string): string;
  /** SCAN pattern matching every worker record. */
  readonly workerPattern: string;
  /** Pub/sub channel: `{"event":"join"|"leave","id":...}` when a worker registers or leaves. */
  readonly events: string;
  /** Lock held while an `--experts auto` worker chooses its experts and claims them. */
  readonly autoLock: string;
  /** Lock held by the one `kmoe cluster rebalance` allowed to change placements at a time. */
  readonly rebalanceLock: string;
}

export function registryKeys(prefix = DEFAULT_PREFIX): RegistryKeys {
  return {
    worker: (id) => `${prefix}worker:${id}`,
    workerPattern: `${prefix}worker:*`,
    events: `${prefix}events`,
    autoLock: `${prefix}lock:auto`,
    rebalanceLock: `${prefix}lock:rebalance`,
  };
}

/** The id a worker key names (inverse of RegistryKeys.worker). */
export function workerIdOf(key: string, prefix = DEFAULT_PREFIX): string {
  return key.slice(`${prefix}worker:`.length);
}

/**
 * KEYS[1] worker key, ARGV[1] record JSON, ARGV[2] TTL ms, KEYS[2] events channel, ARGV[3] id.
 * Writes the record and announces the join only when the key was absent (first registration or
 * after an expiry or a Redis restart), so a heartbeat is one round trip and publishes nothing.
 */
export const REGISTER_SCRIPT = `
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if existed == 0 then
  redis.call('PUBLISH', KEYS[2], cjson.encode({event = 'join', id = ARGV[3]}))
end
return existed
`;

/** KEYS[1] worker key, KEYS[2] events channel, ARGV[1] id: deletes the record and announces the leave. */
export const DEREGISTER_SCRIPT = `
local n = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[2], cjson.encode({event = 'leave', id = ARGV[1]}))
return n
`;

/** KEYS[1] lock key, ARGV[1] token: releases the lock only if this holder still owns it. */
export const UNLOCK_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;
