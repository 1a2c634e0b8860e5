// URLs as they may appear in logs and messages: a Redis URL (`redis://user:pass@host`,
// `rediss://:pass@host/0?password=...`) carries its credentials inline, and a log line is no place
// for them. maskUrl keeps what an operator needs to tell endpoints apart (scheme, user, host, port,
// path) and replaces every secret with `***`.

/** Query parameters whose value is a secret, compared case-insensitively. */
const SECRET_PARAMS = new Set([
  'password',
  'pass',
  'passwd',
  'pwd',
  'token',
  'secret',
  'key',
  'apikey',
  'api_key',
]);

const MASK = '***';

/**
 * `url` with its password (userinfo after the colon) and secret query parameters masked. Text that
 * is not a URL is masked from its first `:` after `//` to its last `@`, so a malformed URL with
 * credentials still does not leak them.
 */
export function maskUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return maskUnparsed(url);
  }
  let masked = false;
  if (parsed.password !== '') {
    parsed.password = MASK;
    masked = true;
  } else if (parsed.username !== '' && isRedis(parsed.protocol)) {
    // `redis://secret@host` (no colon) is how Redis clients take a password without a user name.
    parsed.username = MASK;
    masked = true;
  }
  for (const name of [...parsed.searchParams.keys()]) {
    if (SECRET_PARAMS.has(name.toLowerCase())) {
      parsed.searchParams.set(name, MASK);
      masked = true;
    }
  }
  // Nothing secret: the URL as it was written (URL#toString would normalise it, e.g. add a '/').
  if (!masked) return url;
  // URLSearchParams encodes `*`; keep the mask readable.
  return parsed.toString().replaceAll('%2A%2A%2A', MASK);
}

function isRedis(protocol: string): boolean {
  return protocol === 'redis:' || protocol === 'rediss:';
}

function maskUnparsed(text: string): string {
  const scheme = text.indexOf('//');
  const at = text.lastIndexOf('@');
  if (scheme === -1 || at < scheme) return text;
  const userinfo = text.slice(scheme + 2, at);
  const colon = userinfo.indexOf(':');
  const masked = colon === -1 ? MASK : `${userinfo.slice(0, colon)}:${MASK}`;
  return `${text.slice(0, scheme + 2)}${masked}${text.slice(at)}`;
}
