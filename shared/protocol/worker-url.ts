// What a worker's URL may be: the one rule for --workers, --advertise-url, registry records and the
// coordinator's dialling. ws:// or wss:// with a host and a valid port, nothing ws would refuse
// (a fragment) or dial elsewhere (ws+unix:// is a local socket path, http:// is not the protocol).

/** Why `url` is no worker URL, or undefined if it is one. */
export function workerUrlProblem(url: string): string | undefined {
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
  return undefined;
}
