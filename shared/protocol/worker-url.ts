// What a worker's URL may be: the one rule for --workers, --advertise-url, registry records and the
// coordinator's dialling. ws:// or wss:// with a host and a valid port, nothing ws would refuse
// (a fragment) or dial elsewhere (ws+unix:// is a local socket path, http:// is not the protocol),
// and nothing a person could not read as it is (white space, controls, invisible characters).

/**
 * Characters a worker URL's text may not hold: white space (Unicode Z and \s), controls (Cc),
 * format characters (Cf: bidi controls, zero-width ones) and lone surrogate halves (Cs). The URL
 * parser drops tabs and newlines and percent-encodes the rest, so such a URL would parse, yet a
 * registry record keeps its raw text, and that text reaches log lines and `kmoe cluster status`:
 * refused at the door, every URL a coordinator knows is plain text.
 */
const HIDDEN_OR_SPACE = /[\s\p{Z}\p{Cc}\p{Cf}\p{Cs}]/u;

/** Why `url` is no worker URL, or undefined if it is one. */
export function workerUrlProblem(url: string): string | undefined {
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
  return undefined;
}
