// Text wrapped to a width for --help: at white space, as commander's Help.boxWrap wraps it, and a
// token longer than the width (a default path, a default comma list) broken where it can be read
// across lines, instead of running past the width as boxWrap leaves it.

/** Wraps each line of `text` to `width` columns; no line of the result is longer. */
export function wrapText(text: string, width: number): string {
  // Cutting at less than one column would never end; a width that is no number wraps nothing.
  const columns = Number.isNaN(width) ? Number.POSITIVE_INFINITY : Math.max(1, Math.floor(width));
  return text
    .split(/\r\n|\n/)
    .flatMap((line) => wrapLine(line, columns))
    .join('\n');
}

function wrapLine(line: string, width: number): string[] {
  // Each chunk is a word with the white space before it (a line's indentation stays with its first).
  const chunks = line.match(/\s*\S+/g);
  if (chunks === null) return [''];
  const lines: string[] = [];
  let current = '';
  for (const [i, chunk] of chunks.entries()) {
    if (i > 0 && current.length + chunk.length <= width) {
      current += chunk;
      continue;
    }
    let word = i === 0 ? chunk : chunk.trimStart();
    if (i > 0) {
      // A token that is cut anyway starts on this line when a list of it fits the room left up to
      // a separator: `other settings (dense-weights=FORMAT,expert-...` left `settings` alone on a
      // line at 80 columns. A path is not begun here: its seams are no better than the line's end.
      const space = chunk.length - word.length;
      const cut = word.length > width ? seamWithin(word, width - current.length - space, ',;') : undefined;
      if (cut !== undefined) {
        current += chunk.slice(0, space + cut);
        word = word.slice(cut);
      }
      lines.push(current);
    }
    while (word.length > width) {
      const cut = cutPoint(word, width);
      lines.push(word.slice(0, cut));
      word = word.slice(cut);
    }
    current = word;
  }
  lines.push(current);
  return lines;
}

/**
 * Where a token longer than `width` is cut: after the last list separator within the width, else
 * after the last path or setting seam, else at the width.
 */
function cutPoint(token: string, width: number): number {
  return seamWithin(token, width, ',;') ?? seamWithin(token, width, '/=') ?? width;
}

/** Where `token` is cut after the last of `seams` within its first `room` characters; undefined for none. */
function seamWithin(token: string, room: number, seams: string): number | undefined {
  const head = token.slice(0, Math.max(0, room));
  const at = Math.max(...[...seams].map((c) => head.lastIndexOf(c)));
  return at >= 0 ? at + 1 : undefined;
}
