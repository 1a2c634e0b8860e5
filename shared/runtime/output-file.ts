// The files kmoe writes as results (bench JSON and charts, reports, routing profiles): their
// directory is checked before the work that makes them, so a bench does not run for an hour to
// fail at its --out, and each is written whole (temp file + rename), so a crash or a full disk
// leaves the previous file in place, never half a new one.

import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { DirectoryError, OutputFileError } from './errors.js';
import { entryAt, makeDirectory, refusal } from './make-directory.js';

function writeFailure(target: string, at: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (!(err instanceof Error) || code === undefined) return err;
  return new OutputFileError(target, refusal(at, err, 'files'), { errno: code, cause: err });
}

/**
 * Proves that this process can write files in `dir` without making it or anything else: the
 * nearest existing directory at or above `dir` is found and a probe made there and removed (a file
 * when `dir` exists; when it is missing, a directory with a file in it, as writing will make
 * `dir`). access(W_OK) answers from the permission bits, which root passes everywhere, yes to /proc
 * and /sys, whose file systems refuse the file. Making the directories is left to the write
 * (writeOutputFile), so a command that stops before it (a usage error found later, a server not
 * there) leaves no empty directories behind. Throws DirectoryError or OutputFileError naming `dir`.
 */
export function checkOutputDirectory(dir: string): void {
  const wanted = path.resolve(dir);
  let at = wanted;
  let firstMissing: string | undefined;
  for (;;) {
    const entry = entryAt(at);
    if (entry?.isDirectory()) break;
    if (entry !== undefined)
      throw new DirectoryError(dir, `${at} is a file, not a directory`, { errno: 'ENOTDIR' });
    firstMissing = at;
    if (at === path.dirname(at)) break;
    at = path.dirname(at);
  }
  const name = `.kmoe-write-check-${process.pid}-${randomBytes(4).toString('hex')}`;
  if (firstMissing === undefined) {
    const probe = path.join(at, name);
    try {
      closeSync(openSync(probe, 'wx'));
      rmSync(probe);
    } catch (err) {
      throw writeFailure(`in ${dir}`, probe, err);
    }
    return;
  }
  const probeDir = path.join(at, name);
  try {
    mkdirSync(probeDir);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === undefined) throw err;
    // Named as the level that writing would fail to make.
    throw new DirectoryError(firstMissing, refusal(firstMissing, e, 'directories'), {
      errno: e.code,
      cause: err,
    });
  }
  try {
    const probe = path.join(probeDir, 'probe');
    try {
      closeSync(openSync(probe, 'wx'));
    } catch (err) {
      throw writeFailure(`in ${dir}`, probe, err);
    }
  } finally {
    rmSync(probeDir, { recursive: true, force: true });
  }
}

/**
 * Writes `data` to `file` whole: into a temp file beside it, flushed to disk, then renamed over
 * `file` (its directory made first). Throws DirectoryError or OutputFileError naming `file`.
 */
export function writeOutputFile(file: string, data: string | Uint8Array): void {
  makeDirectory(path.dirname(path.resolve(file)));
  const { target, inPlace } = outputTarget(file);
  if (inPlace) {
    try {
      writeFileSync(file, data);
    } catch (err) {
      throw writeFailure(file, file, err);
    }
    return;
  }
  const temp = tempBeside(target);
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

/**
 * Where writing `file` whole goes. What is there already decides how: a device or a FIFO (--out
 * /dev/null, /dev/stdout, a pipe) is written to in place, never replaced (renaming over /dev/null
 * as root replaced it with a regular file for every process); a symlink's target is replaced, not
 * the link.
 */
export function outputTarget(file: string): { readonly target: string; readonly inPlace: boolean } {
  const existing = statSync(file, { throwIfNoEntry: false });
  if (existing !== undefined && !existing.isFile() && !existing.isDirectory())
    return { target: file, inPlace: true };
  return { target: existing === undefined ? file : realpathSync(file), inPlace: false };
}

/**
 * A temp file's name beside `target`, to be created with O_EXCL ('wx': a link planted under this
 * name is not followed) and renamed over `target` once complete.
 */
export function tempBeside(target: string): string {
  return `${target}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
}
