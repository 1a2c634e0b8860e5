// Makes a directory and the missing ones above it, one level at a time. Node's
// mkdir(dir, { recursive: true }) never returns where mkdir fails with ENOENT under a directory that
// exists (procfs: `--out /proc/x/y.json` spun at full CPU), so kmoe's outputs make their
// directories here: each missing level is tried once and the first failure is thrown.

import { mkdirSync, type Stats, statSync } from 'node:fs';
import path from 'node:path';
import { DirectoryError } from './errors.js';

/** What a failed mkdir of `dir` means, in words, for a DirectoryError. */
function mkdirProblem(dir: string, err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      // Its parent was there a moment ago (made or found): the file system refuses the name.
      return `${path.dirname(dir)} takes no new directories (ENOENT)`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${err.code})`;
    case 'EROFS':
      return 'read-only file system (EROFS)';
    default:
      return err.code ?? err.message;
  }
}

/** The directory entry at `at`, undefined when there is none (ENOENT, or a file where a parent should be). */
function entryAt(at: string): Stats | undefined {
  try {
    return statSync(at);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new DirectoryError(at, mkdirProblem(at, err as NodeJS.ErrnoException), { errno: code, cause: err });
  }
}

/** `mkdir -p dir`, bounded: throws DirectoryError naming the level that could not be made. */
export function makeDirectory(dir: string): void {
  const missing: string[] = [];
  for (let at = path.resolve(dir); ; at = path.dirname(at)) {
    const entry = entryAt(at);
    if (entry?.isDirectory()) break;
    if (entry !== undefined)
      throw new DirectoryError(dir, `${at} is a file, not a directory`, { errno: 'ENOTDIR' });
    missing.push(at);
    if (at === path.dirname(at)) break;
  }
  for (const level of missing.reverse()) {
    try {
      mkdirSync(level);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      // Made meanwhile by another process (two commands writing under one bench-results/).
      if (e.code === 'EEXIST' && entryAt(level)?.isDirectory()) continue;
      throw new DirectoryError(level, mkdirProblem(level, e), { errno: e.code, cause: err });
    }
  }
}
