// The registry's URL as the CLI checks it, without loading the Redis client (the CLI validates
// its flags before it loads anything heavy).

import { maskUrl } from '../runtime/mask-url.js';

/** The environment variable that stands for --redis (it keeps a password out of `ps`). */
export const REDIS_URL_ENV = 'KMOE_REDIS_URL';

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
