// Text a peer chose (a coordinator's client string, a worker's error message, a registry record's
// id or URL), made safe to quote in a log line, an error message or a terminal table: bounded, one
// line, no control characters, and no invisible format characters, among them the Unicode
// bidirectional controls, which make a terminal or log viewer show the rest of the line reordered
// (Trojan Source, CVE-2021-42574), so that quoted text could pass for the line around it.

// Escaped: the controls (general category Cc: C0, DEL, C1), every format character (Cf: the bidi
// controls ALM, LRM/RLM, LRE..RLO, LRI..PDI, zero-width spaces and joiners, the word joiner, the
// BOM, interlinear annotation marks, the tag characters U+E0000-U+E007F that copy ASCII
// invisibly), a lone surrogate half (Cs: a cut pair) and the line and paragraph separators
// (U+2028, U+2029). The zero width joiner U+200D is Cf too, so an emoji ZWJ sequence comes out as
// its parts with \u200d between them: quoted peer text is for reading what was sent, not for
// rendering it, and a ZWJ can hide text as well as any other invisible character.
// The text is cut to `max` characters before the scan: the cost is bounded whatever a peer sends.
const UNSAFE = /[\p{Cc}\p{Cf}\p{Cs}\u2028\u2029]/gu;

/**
 * Peer-supplied text as one log-safe line in JSON string syntax: at most `max` characters,
 * quotes and backslashes escaped, control, format (bidi, zero-width) and line-separator
 * characters escaped, so a newline in a handshake's client string cannot forge a log line, nor a
 * right-to-left override make it read as something else.
 */
export function printable(text: string, max = 200): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return JSON.stringify(cut).slice(1, -1).replace(UNSAFE, escapeChar);
}

/** \uXXXX, or \u{XXXXX} beyond the basic plane (a tag character). */
function escapeChar(c: string): string {
  const cp = c.codePointAt(0)!;
  return cp > 0xffff ? `\\u{${cp.toString(16)}}` : `\\u${cp.toString(16).padStart(4, '0')}`;
}

/**
 * Like `printable`, for text that is already a message (quotes and backslashes kept as they are,
 * which a worker's own escaping put there): only control, format and line-separator characters
 * escaped.
 */
export function oneLine(text: string, max = 500): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return cut.replace(UNSAFE, escapeChar);
}
