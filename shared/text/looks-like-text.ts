// Whether a file's bytes look like text: used to tell a user who passed a text file where binary
// token ids were expected what they passed, instead of only that the numbers are out of range.

/** Bytes looked at: enough to judge, bounded so a large corpus costs nothing extra. */
const SAMPLE_BYTES = 64 * 1024;

/** Share of printable characters above which a sample is called text (a few stray controls allowed). */
const PRINTABLE_SHARE = 0.95;

/**
 * True when the first 64 KiB decode as UTF-8 (ASCII included) and nearly all of their characters
 * are printable or ordinary white space. Token ids as little-endian uint16 fail this: ids below
 * 4096 put a byte of 0x00-0x0f in every pair, and larger vocabularies make invalid UTF-8.
 */
export function looksLikeText(bytes: Uint8Array): boolean {
  const sample = bytes.subarray(0, SAMPLE_BYTES);
  if (sample.length === 0) return false;
  let text: string;
  try {
    // stream: a multi-byte character cut by the end of the sample is not an error.
    text = new TextDecoder('utf-8', { fatal: true }).decode(sample, { stream: true });
  } catch {
    return false;
  }
  let printable = 0;
  let chars = 0;
  for (const ch of text) {
    chars++;
    if (/[\t\n\r\f]/.test(ch) || !/\p{C}/u.test(ch)) printable++;
  }
  return chars > 0 && printable / chars >= PRINTABLE_SHARE;
}
