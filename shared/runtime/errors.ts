// Errors of the process runtime shared by coordinator and worker servers.

import { KmoeError } from '../errors/kmoe-error.js';

/**
 * A server cannot listen on the address it was given (port taken, address not local, permission
 * denied). Names the address so the operator can pick another.
 */
export class ListenError extends KmoeError {
  constructor(host: string, port: number, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code;
    super(`cannot listen on ${host}:${port}: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
      hint:
        code === 'EADDRINUSE'
          ? 'another process uses that port: choose another with --port, or --port 0 for any free port'
          : 'check --host and --port',
      details: { host, port, ...(code === undefined ? {} : { errno: code }) },
    });
  }
}

/** What to do about an output that cannot be written where it was asked for. */
const WRITE_ELSEWHERE = 'write the output under a directory this user can create files in';

/**
 * A directory an output goes in cannot be made: a file stands in its way, permission is denied, or
 * its file system takes no new directories (/proc, /sys). Names the directory and, in `errno`, why.
 */
export class DirectoryError extends KmoeError {
  constructor(
    dir: string,
    problem: string,
    options: { readonly errno?: string | undefined; readonly cause?: unknown } = {},
  ) {
    super(`cannot make directory ${dir}: ${problem}`, {
      cause: options.cause,
      hint: WRITE_ELSEWHERE,
      details: { dir, ...(options.errno === undefined ? {} : { errno: options.errno }) },
    });
  }
}

/**
 * An output cannot be written: its directory takes no new files (permission denied, a read-only
 * file system, /sys), or writing it failed (disk full). `target` names the file, or `in DIR` for a
 * directory checked before the work; `errno` says why.
 */
export class OutputFileError extends KmoeError {
  constructor(
    target: string,
    problem: string,
    options: { readonly errno?: string | undefined; readonly cause?: unknown } = {},
  ) {
    super(`cannot write ${target}: ${problem}`, {
      cause: options.cause,
      hint:
        options.errno === 'ENOSPC'
          ? 'free space on that file system, or write the output on another'
          : WRITE_ELSEWHERE,
      details: { target, ...(options.errno === undefined ? {} : { errno: options.errno }) },
    });
  }
}

/**
 * An output path of a command line cannot be written (its DirectoryError or OutputFileError, found
 * before the work), said with the flag and the path as given, default or typed.
 */
export class OutputPathError extends KmoeError {
  constructor(flag: string, given: string, cause: DirectoryError | OutputFileError) {
    super(`${flag} ${given}: ${cause.message}`, {
      cause,
      hint: cause.hint ?? WRITE_ELSEWHERE,
      details: { flag, path: given, ...cause.details },
    });
  }
}
