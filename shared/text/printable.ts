// Text a peer chose (a coordinator's client string, a worker's error message), made safe to quote
// in a log line or an error message: bounded, one line, no control characters, and no Unicode
// bidirectional controls, which make a terminal or log viewer show the rest of the line reordered
// (Trojan Source, CVE-2021-42574), so that quoted text could pass for the line around it.

// Escaped besides the C0/C1 controls: the line and paragraph separators (U+2028, U+2029) and the
// bidi controls: ALM U+061C, LRM/RLM U+200E-U+200F, LRE/RLE/PDF/LRO/RLO U+202A-U+202E and
// LRI/RLI/FSI/PDI U+2066-U+2069.

/**
 * Peer-supplied text as one log-safe line: at most `max` characters, control, line-separator and
 * bidi control characters escaped, so a newline in a handshake's client string cannot forge a log
 * line, nor a right-to-left override make it read as something else.
 */
export function printable(text: string, max = 200): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return JSON.stringify(cut)
    .slice(1, -1)
    .replace(/[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, escapeChar);
}

function escapeChar(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * Like `printable`, for text that is already a message (quotes and backslashes kept as they are,
 * which a worker's own escaping put there): only control, line-separator and bidi control
 * characters escaped.
 */
export function oneLine(text: string, max = 500): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return cut.replace(/[\p{Cc}\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu, escapeChar);
}
