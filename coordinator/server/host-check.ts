// DNS rebinding: a web page on attacker.example re-points its name at 127.0.0.1, and the victim's
// browser then sends that page's requests to a server on loopback, with `Host: attacker.example`.
// A loopback server without an API key trusts whoever can reach it, so it answers only requests
// addressed to a loopback name (or to names it is given). Servers on other addresses, or with a
// key, already decide who may talk to them; their Host is not checked unless names are given.

export type HostCheck =
  | { readonly kind: 'any' }
  | {
      readonly kind: 'loopback';
      /** Names allowed besides loopback ones (`--allowed-hosts`), lower case. */
      readonly extra: ReadonlySet<string>;
    };

/** `--allowed-hosts '*'`: no check. */
export const ANY_HOST = '*';

/**
 * The check `kmoe serve --host listenHost` makes, with or without an API key. Names given
 * (`--allowed-hosts`) turn it on whatever the listen address: a container listens on 0.0.0.0 while
 * its host publishes the port on loopback, where a browser reaches it by rebinding all the same.
 */
export function hostCheckFor(listenHost: string, hasApiKey: boolean, allowed: readonly string[]): HostCheck {
  if (hasApiKey || allowed.includes(ANY_HOST)) return { kind: 'any' };
  if (allowed.length === 0 && !isLoopbackName(canonicalHost(listenHost) ?? '')) return { kind: 'any' };
  // checkAllowedHost took every entry, so each has a canonical form.
  return { kind: 'loopback', extra: new Set(allowed.map((name) => canonicalHost(name)!)) };
}

/**
 * The startup warning for `--allowed-hosts` names given with an API key: the key is the guard then
 * (a rebinding page cannot send it), so Host is not checked and the names do nothing.
 */
export function unusedAllowedHosts(hasApiKey: boolean, allowed: readonly string[]): string | undefined {
  const names = allowed.filter((name) => name !== ANY_HOST);
  if (!hasApiKey || names.length === 0) return undefined;
  return `--allowed-hosts ${names.join(',')} has no effect with --api-key: a server with a key answers any Host that sends the key`;
}

/** An --allowed-hosts entry: `*`, a DNS name or an IP address, without port or scheme; else the problem. */
export function checkAllowedHost(entry: string): string | undefined {
  if (entry === ANY_HOST) return undefined;
  const name = /^\[[0-9a-f:.]+\]$/i.test(entry) ? entry.slice(1, -1) : entry;
  const wellFormed =
    (/^[0-9a-f:.]+$/i.test(name) && name.includes(':')) ||
    (/^[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?\.?$/i.test(name) && name.length <= 253);
  if (wellFormed && canonicalHost(name) !== undefined) return undefined;
  const shown = JSON.stringify(entry.slice(0, 100));
  // Say what is wrong: a URL or a host:port is a name with more around it; anything else is no name.
  if (entry.includes('/'))
    return `--allowed-hosts takes host names or addresses, not URLs or paths (or '*'), got ${shown}`;
  if (/^(?:\[[^\]]*\]|[^:]*):\d*$/.test(entry))
    return `--allowed-hosts takes host names or addresses without a port (or '*'), got ${shown}`;
  return `--allowed-hosts: ${shown} is not a valid host name or address`;
}

/** Whether a request with this Host header may be served (no header: HTTP/1.0, not a browser). */
export function hostAllowed(check: HostCheck, hostHeader: string | undefined): boolean {
  if (check.kind === 'any' || hostHeader === undefined) return true;
  const name = hostnameOf(hostHeader);
  return name !== undefined && (isLoopbackName(name) || check.extra.has(name));
}

/**
 * A Host value as RFC 9110 has it: a DNS name or IPv4 address, or a bracketed IPv6 one, and an
 * optional port: decimal digits (leading zeros too, no sign), as the WHATWG URL parser takes them.
 */
const HOST_VALUE = /^(?:\[([0-9a-f:.]+)\]|([a-z0-9_.-]+))(?::(\d*))?$/i;

/** The largest TCP port; the URL parser refuses a Host with a larger one, so no browser sends it. */
const MAX_PORT = 65_535;

/**
 * The name part of a Host header (`name`, `name:port`, `[v6]:port`) in canonical form
 * (canonicalHost); undefined unless well formed. IPv6 zone ids (`[fe80::1%25eth0]`) are refused:
 * RFC 9110 has no place for them in Host, and browsers do not send them.
 */
export function hostnameOf(hostHeader: string): string | undefined {
  const m = HOST_VALUE.exec(hostHeader.trim());
  if (m === null) return undefined;
  // Digits only, so Number() reads the value (leading zeros and all) without rounding below 2^53.
  if (m[3] !== undefined && Number(m[3]) > MAX_PORT) return undefined;
  // Empty labels (".localhost", "a..b") make no name a browser would send.
  const labels = m[2]?.replace(/\.$/, '').split('.') ?? [];
  if (labels.includes('')) return undefined;
  return canonicalHost(m[1] === undefined ? m[2]! : `[${m[1]}]`);
}

/**
 * A host as a browser's URL parser (WHATWG) writes it: lower case, no trailing dot, IPv4 addresses
 * in dotted decimal (`127.1` and `0x7f.1` are 127.0.0.1), IPv6 ones compressed and without brackets
 * (`[0:0:0:0:0:0:0:1]` is ::1); undefined for what is no host (`127.0.0.256`). Browsers send the
 * canonical form, so comparing canonical forms refuses no spelling a person may type, and lets no
 * other name pass as loopback.
 */
export function canonicalHost(host: string): string | undefined {
  const trimmed = host.trim();
  // Only a host: the URL parser would take `user@name` or `name/path` apart and keep a part.
  if (!/^[a-z0-9_.:[\]-]+$/i.test(trimmed)) return undefined;
  const bracketed = trimmed.includes(':') && !trimmed.startsWith('[') ? `[${trimmed}]` : trimmed;
  let name: string;
  try {
    name = new URL(`http://${bracketed}/`).hostname;
  } catch {
    return undefined;
  }
  const bare = name.startsWith('[') ? name.slice(1, -1) : name;
  return bare.endsWith('.') ? bare.slice(0, -1) : bare;
}

/**
 * The authority a request is addressed to: an absolute-form target's (`GET http://name/path`),
 * which RFC 9112 says wins over the Host header, else the Host header.
 */
export function requestAuthority(target: string, hostHeader: string | undefined): string | undefined {
  if (!/^https?:\/\//i.test(target)) return hostHeader;
  const rest = target.slice(target.indexOf('//') + 2);
  const end = rest.search(/[/?#]/);
  return end < 0 ? rest : rest.slice(0, end);
}

/** localhost and its subdomains (RFC 6761), 127.0.0.0/8, ::1; `name` in canonical form (canonicalHost). */
function isLoopbackName(name: string): boolean {
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  return name === '::1' || /^127\.\d+\.\d+\.\d+$/.test(name);
}

/** For the serving log line. */
export function describeHostCheck(check: HostCheck): string {
  if (check.kind === 'any') return 'any Host';
  const extra = [...check.extra];
  return `loopback names only${extra.length > 0 ? ` and ${extra.join(', ')}` : ''} (no API key)`;
}
