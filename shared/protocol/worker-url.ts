// What a worker's URL may be: the one rule for --workers, --advertise-url, registry records and the
// coordinator's dialling. ws:// or wss:// with a host and a valid port, nothing ws would refuse
// (a fragment) or dial elsewhere (ws+unix:// is a local socket path, http:// is not the protocol),
// and nothing a person could not read as it is (white space, controls, invisible characters).
// Also the one canonical form of a worker URL, which both handshake proofs cover (auth.ts).

import { isIPv4, isIPv6 } from 'node:net';

/**
 * Characters a worker URL's text may not hold: white space (Unicode Z and \s), controls (Cc),
 * format characters (Cf: bidi controls, zero-width ones) and lone surrogate halves (Cs). The URL
 * parser drops tabs and newlines and percent-encodes the rest, so such a URL would parse, yet a
 * registry record keeps its raw text, and that text reaches log lines and `kmoe cluster status`:
 * refused at the door, every URL a coordinator knows is plain text.
 */
const HIDDEN_OR_SPACE = /[\s\p{Z}\p{Cc}\p{Cf}\p{Cs}]/u;

/**
 * Longest worker URL, as written and in canonical form: it travels in the hello (read before any
 * authentication) and in registry records (record.ts), so one bound for both; a URL accepted here
 * is one every coordinator reads from a record.
 */
export const MAX_WORKER_URL_CHARS = 2048;

/** Why `url` is no worker URL, or undefined if it is one. */
export function workerUrlProblem(url: string): string | undefined {
  // Written: a record keeps the text, user name and password included (which the canonical drops).
  if (url.length > MAX_WORKER_URL_CHARS)
    return `it is ${url.length} characters long; at most ${MAX_WORKER_URL_CHARS}`;
  const hidden = HIDDEN_OR_SPACE.exec(url);
  if (hidden)
    return `it holds white space or an invisible character (U+${hidden[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')} at offset ${hidden.index}); percent-encode it`;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'not a URL';
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:')
    return `the scheme must be ws:// or wss://, not ${u.protocol}//`;
  if (u.hostname === '') return 'it names no host';
  // Any '#' starts a fragment, an empty one too (`ws://h:1/#`, where u.hash is '').
  if (url.includes('#')) return 'it has a fragment (#...)';
  const canonical = canonicalForm(u);
  if (canonical.length > MAX_WORKER_URL_CHARS)
    return `it is ${canonical.length} characters long written out in full; at most ${MAX_WORKER_URL_CHARS}`;
  return undefined;
}

/**
 * The form in which a coordinator and a worker compare the URL the coordinator dialled: the WHATWG
 * serialisation (scheme and host in lower case, a default port dropped, an empty path written '/',
 * percent-encoding and IDNA applied), without user name and password, which are the dialler's
 * credentials for a proxy and no part of which worker it reaches. Both sides run this one function,
 * so `ws://Worker:7070` and `ws://worker:7070/` are one URL; `localhost` and `127.0.0.1` stay two.
 * Throws RangeError on a URL workerUrlProblem refuses.
 */
export function canonicalWorkerUrl(url: string): string {
  const problem = workerUrlProblem(url);
  if (problem !== undefined) throw new RangeError(`not a worker URL: ${problem}`);
  return canonicalForm(new URL(url));
}

function canonicalForm(u: URL): string {
  const c = new URL(u.href);
  c.username = '';
  c.password = '';
  return c.href;
}

/**
 * Whether `url`'s host is one every host has: loopback (itself) or unspecified (0.0.0.0, ::). A
 * worker registering such a URL is reachable only on its own host, whatever the URL binding proves.
 */
export function isLoopbackOrUnspecified(url: string): boolean {
  // WHATWG form: IPv4 dotted (127.1 and 2130706433 are 127.0.0.1), IPv6 compressed in brackets.
  const host = new URL(url).hostname.replace(/\.$/, '');
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  if (isIPv4(bare)) return bare.startsWith('127.') || bare === '0.0.0.0';
  if (isIPv6(bare)) {
    // ::, ::1, and IPv4-mapped loopback or unspecified (::ffff:7f00:1, ::ffff:0:0).
    return bare === '::' || bare === '::1' || /^::ffff:(7f[0-9a-f]{2}:[0-9a-f]{1,4}|0:0)$/.test(bare);
  }
  return host === 'localhost' || host.endsWith('.localhost');
}
