// Opening a Redis connection for the registry: redis:// or rediss:// (TLS, handled by ioredis, the
// server's certificate always verified, against `ca` when given), with reconnects forever (serving
// must outlive a Redis restart) and every URL shown to people with its password masked.

import { Redis } from 'ioredis';
import { maskUrl } from '../runtime/mask-url.js';
import { RegistryError } from './errors.js';

export interface RegistryConnectionOptions {
  /** Called on connection errors (already masked), at most once per outage. */
  readonly onError?: (message: string) => void;
  /** Called when the connection is ready again after an outage. */
  readonly onReady?: () => void;
  readonly connectTimeoutMs?: number;
  /**
   * PEM certificate(s) trusted instead of Node's CA store for a rediss:// URL (`--redis-ca`): a
   * self-signed or private CA. Verification is never turned off.
   */
  readonly ca?: string;
}

/** Node's codes for a server certificate that does not verify (chain, signature, name, dates). */
const CERT_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** ioredis' TLS option for `url`: rediss:// verifies (against `ca` if given); redis:// has none. */
function tlsOption(url: string, ca: string | undefined): { tls?: { ca: string } } {
  const secure = new URL(url).protocol === 'rediss:';
  // A CA with redis:// would make ioredis speak TLS to a URL that says plaintext: refuse instead.
  if (ca !== undefined && !secure)
    throw new RegistryError(`a CA certificate was given for ${maskUrl(url)}, which is not rediss://`, {
      hint: 'use a rediss:// URL (Redis over TLS) with --redis-ca',
    });
  return ca === undefined ? {} : { tls: { ca } };
}

/**
 * A connection that reconnects with capped backoff for as long as the process lives. Commands
 * issued while it is down fail at once (no offline queue): callers keep their last known state
 * and retry on their next tick instead of piling up commands.
 */
export function openRegistryConnection(url: string, o: RegistryConnectionOptions = {}): Redis {
  const redis = new Redis(url, {
    ...tlsOption(url, o.ca),
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
  // Outage reports start once connected: a first connection that fails is this function's error,
  // not an outage that "serving continues" through.
  let connected = false;
  const redis = openRegistryConnection(url, {
    ...o,
    onError: (m) => {
      if (connected) o.onError?.(m);
    },
  });
  // connect() rejects with "Connection is closed"; the cause (WRONGPASS, NOAUTH, ECONNREFUSED)
  // came in an error event just before.
  let cause: Error | undefined;
  const remember = (err: Error) => {
    cause = err;
  };
  redis.on('error', remember);
  try {
    await redis.connect();
    connected = true;
    redis.off('error', remember);
  } catch (err) {
    redis.disconnect();
    const why = (cause ?? (err as Error)) as NodeJS.ErrnoException;
    const message = maskSecrets(why.message, url);
    if (why.code !== undefined && CERT_VERIFY_CODES.has(why.code))
      throw new RegistryError(
        `cannot connect to the registry at ${maskUrl(url)}: TLS certificate verify failed (${why.code}): ${message}`,
        {
          hint: `give the CA that signed the Redis server's certificate with --redis-ca FILE${o.ca === undefined ? '' : ' (the one given did not verify it)'}; verification is never skipped`,
          details: { tlsError: why.code },
        },
      );
    throw new RegistryError(`cannot connect to the registry at ${maskUrl(url)}: ${message}`, {
      hint: 'check --redis (host, port, password, redis:// or rediss://) and that redis-server runs',
    });
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
