// The files kmoe writes as results (bench JSON and charts, reports, routing profiles): their
// directory is checked before the work that makes them, so a bench does not run for an hour to
// fail at its --out, and each is written whole (temp file + rename), so a crash or a full disk
// leaves the previous file in place, never half a new one.

import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  openSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { OutputFileError } from './errors.js';
import { makeDirectory, refusal } from './make-directory.js';

function writeFailure(target: string, at: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (!(err instanceof Error) || code === undefined) return err;
  return new OutputFileError(target, refusal(at, err, 'files'), { errno: code, cause: err });
}

/**
 * Makes `dir` and proves that this process can create files in it, by creating and removing one:
 * access(W_OK) answers from the permission bits, which root passes everywhere, yes to /proc and
 * /sys, whose file systems refuse the file. Throws DirectoryError or OutputFileError naming `dir`.
 */
export function checkOutputDirectory(dir: string): void {
  makeDirectory(dir);
  const probe = path.join(dir, `.kmoe-write-check-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    closeSync(openSync(probe, 'wx'));
    rmSync(probe);
  } catch (err) {
    throw writeFailure(`in ${dir}`, probe, err);
  }
}

/**
 * Writes `data` to `file` whole: into a temp file beside it, flushed to disk, then renamed over
 * `file` (its directory made first). Throws DirectoryError or OutputFileError naming `file`.
 */
export function writeOutputFile(file: string, data: string | Uint8Array): void {
  makeDirectory(path.dirname(path.resolve(file)));
  // What is there already decides how: a device or a FIFO (--out /dev/null, /dev/stdout, a pipe)
  // is written to, as before the temp file, never replaced (renaming over /dev/null as root
  // replaced it with a regular file for every process); a symlink's target is replaced, not the
  // link.
  const existing = statSync(file, { throwIfNoEntry: false });
  if (existing !== undefined && !existing.isFile() && !existing.isDirectory()) {
    try {
      writeFileSync(file, data);
    } catch (err) {
      throw writeFailure(file, file, err);
    }
    return;
  }
  const target = existing === undefined ? file : realpathSync(file);
  // Created, never opened if there (O_EXCL: a link planted under this name is not followed).
  const temp = `${target}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fd = openSync(temp, 'wx');
    try {
      writeFileSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, target);
  } catch (err) {
    rmSync(temp, { force: true });
    throw writeFailure(file, file, err);
  }
}
