// Text a peer chose (a coordinator's client string, a worker's error message), made safe to quote
// in a log line or an error message: bounded, one line, no control characters.

/**
 * Peer-supplied text as one log-safe line: at most `max` characters, control and line-separator
 * characters escaped, so a newline in a handshake's client string cannot forge a log line.
 */
export function printable(text: string, max = 200): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return JSON.stringify(cut)
    .slice(1, -1)
    .replace(/[\u007f-\u009f\u2028\u2029]/g, escapeChar);
}

function escapeChar(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * Like `printable`, for text that is already a message (quotes and backslashes kept as they are,
 * which a worker's own escaping put there): only control and line-separator characters escaped.
 */
export function oneLine(text: string, max = 500): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return cut.replace(/[\p{Cc}\u2028\u2029]/gu, escapeChar);
}
