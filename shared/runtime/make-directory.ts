// Makes a directory and the missing ones above it, one level at a time. Node's
// mkdir(dir, { recursive: true }) never returns where mkdir fails with ENOENT under a directory that
// exists (procfs: `--out /proc/x/y.json` spun at full CPU), so kmoe's outputs make their
// directories here: each missing level is tried once and the first failure is thrown.

import { mkdirSync, type Stats, statSync } from 'node:fs';
import path from 'node:path';
import { DirectoryError } from './errors.js';

/**
 * What a failed mkdir of `at` (makes: directories) or a failed create or write of the file `at`
 * (makes: files) means, in words, for a DirectoryError or an OutputFileError.
 */
export function refusal(at: string, err: NodeJS.ErrnoException, makes: 'directories' | 'files'): string {
  switch (err.code) {
    case 'ENOENT':
      // Its parent was there a moment ago (made or found): the file system refuses the name.
      return `${path.dirname(at)} takes no new ${makes} (ENOENT)`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${err.code})`;
    case 'EROFS':
      return 'read-only file system (EROFS)';
    case 'ENOSPC':
      return 'no space left on the device (ENOSPC)';
    default:
      return err.code ?? err.message;
  }
}

/**
 * The directory entry at `at`, undefined when there is none (ENOENT, or a file where a parent
 * should be); any other failure to look is a DirectoryError naming `at`.
 */
export function entryAt(at: string): Stats | undefined {
  try {
    return statSync(at);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new DirectoryError(at, refusal(at, err as NodeJS.ErrnoException, 'directories'), {
      errno: code,
      cause: err,
    });
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
      throw new DirectoryError(level, refusal(level, e, 'directories'), { errno: e.code, cause: err });
    }
  }
}
