// makeDirectory: `mkdir -p` that tries each missing level once, so a file system that refuses new
// directories (procfs answers ENOENT under /proc, where Node's recursive mkdir retried forever)
// fails at once, naming the level it could not make.

import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DirectoryError } from '../../../shared/runtime/errors.js';
import { makeDirectory } from '../../../shared/runtime/make-directory.js';

const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-make-directory-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The DirectoryError makeDirectory(target) throws. */
function failure(target: string): DirectoryError {
  try {
    makeDirectory(target);
  } catch (err) {
    if (err instanceof DirectoryError) return err;
    throw err;
  }
  throw new Error(`makeDirectory(${target}) did not fail`);
}

describe('makeDirectory', () => {
  it('makes every missing level, and leaves an existing directory as it is', () => {
    const deep = path.join(dir, 'a', 'b', 'c');
    makeDirectory(deep);
    expect(statSync(deep).isDirectory()).toBe(true);
    writeFileSync(path.join(deep, 'kept'), 'x');
    makeDirectory(deep);
    expect(statSync(path.join(deep, 'kept')).size).toBe(1);
  });

  it('names a file standing where a directory should be', () => {
    const file = path.join(dir, 'file');
    writeFileSync(file, 'x');
    const err = failure(path.join(file, 'x', 'y'));
    expect(err.message).toBe(
      `cannot make directory ${path.join(file, 'x', 'y')}: ${file} is a file, not a directory`,
    );
    expect(err.details['errno']).toBe('ENOTDIR');
  });

  it('fails at once under /proc, which takes no new directories', () => {
    const err = failure('/proc/kmoe-no-such-dir/out');
    // root gets procfs' ENOENT; another user is refused the write permission first.
    expect(err.message).toMatch(
      /^cannot make directory \/proc\/kmoe-no-such-dir: (\/proc takes no new directories \(ENOENT\)|permission denied \(EACCES\))$/,
    );
  });
});
