// Short names for large inline routing profiles between the server and the engine thread. A profile
// with substitute tables is megabytes of JSON; sent as the routing of every step it was copied to
// the engine thread and hashed as a cache key each time (~3 ms per decode step for 2.8 MB). The
// server sends a handle (its SHA-256) instead, with the text only on the steps that may be the
// engine's first sight of it (a sequence's prefill); the engine keeps the policy of every live
// sequence it resolved from a handle.

import { createHash } from 'node:crypto';

const PREFIX = 'inline-profile@sha256:';
const HANDLE = /^inline-profile@sha256:[0-9a-f]{64}$/;

/** Inline profiles at least this long travel as handles. */
export const ROUTING_HANDLE_MIN_CHARS = 64 * 1024;

/** The handle of a routing text (the canonical JSON of an inline profile). */
export function routingHandle(text: string): string {
  return PREFIX + createHash('sha256').update(text).digest('hex');
}

export function isRoutingHandle(routing: string): boolean {
  return HANDLE.test(routing);
}
