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
    if (i > 0) lines.push(current);
    let word = i === 0 ? chunk : chunk.trimStart();
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
  const room = token.slice(0, width);
  for (const seams of [',;', '/=']) {
    const at = Math.max(...[...seams].map((c) => room.lastIndexOf(c)));
    if (at >= 0) return at + 1;
  }
  return width;
}
