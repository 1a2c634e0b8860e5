// Opening a Redis connection for the registry: redis:// or rediss:// (TLS, handled by ioredis), with
// reconnects forever (serving must outlive a Redis restart) and every URL shown to people with its
// password masked.

import { Redis } from 'ioredis';
import { maskUrl } from '../runtime/mask-url.js';
import { RegistryError } from './errors.js';

/** Checks the scheme once, at the edge; the CLI turns this into a usage error. */
export function checkRedisUrl(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `not a URL: ${maskUrl(url)}`;
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    return `expected redis:// or rediss://, got ${u.protocol}//`;
  return undefined;
}

export interface RegistryConnectionOptions {
  /** Called on connection errors (already masked), at most once per outage. */
  readonly onError?: (message: string) => void;
  /** Called when the connection is ready again after an outage. */
  readonly onReady?: () => void;
  readonly connectTimeoutMs?: number;
}

/**
 * A connection that reconnects with capped backoff for as long as the process lives. Commands
 * issued while it is down fail at once (no offline queue): callers keep their last known state
 * and retry on their next tick instead of piling up commands.
 */
export function openRegistryConnection(url: string, o: RegistryConnectionOptions = {}): Redis {
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: o.connectTimeoutMs ?? 5000,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
  });
  let outage = false;
  let reported = false;
  let wasReady = false;
  redis.on('error', (err: Error) => {
    outage = true;
    if (reported) return;
    reported = true;
    o.onError?.(`redis ${maskUrl(url)}: ${maskSecrets(err.message, url)}`);
  });
  // A clean server shutdown closes the socket without an error; the reconnect that follows may
  // reach a restarted, empty Redis: that is an outage too.
  redis.on('close', () => {
    if (wasReady) outage = true;
  });
  redis.on('ready', () => {
    if (outage) o.onReady?.();
    outage = false;
    reported = false;
    wasReady = true;
  });
  return redis;
}

/** Connects (first time) or fails with a RegistryError naming the masked URL. */
export async function connectRegistry(url: string, o: RegistryConnectionOptions = {}): Promise<Redis> {
  const redis = openRegistryConnection(url, o);
  // connect() rejects with "Connection is closed"; the cause (WRONGPASS, NOAUTH, ECONNREFUSED)
  // came in an error event just before.
  let cause: Error | undefined;
  const remember = (err: Error) => {
    cause = err;
  };
  redis.on('error', remember);
  try {
    await redis.connect();
    redis.off('error', remember);
  } catch (err) {
    redis.disconnect();
    throw new RegistryError(
      `cannot connect to the registry at ${maskUrl(url)}: ${maskSecrets((cause ?? (err as Error)).message, url)}`,
      { hint: 'check --redis (host, port, password, redis:// or rediss://) and that redis-server runs' },
    );
  }
  return redis;
}

/** Removes the URL's password from a message (ioredis errors may quote the URL). */
function maskSecrets(message: string, url: string): string {
  try {
    const u = new URL(url);
    const secrets = [u.password, u.username].filter((s) => s.length >= 3).map(decodeURIComponent);
    let m = message;
    for (const s of secrets) m = m.split(s).join('***');
    return m;
  } catch {
    return message;
  }
}
