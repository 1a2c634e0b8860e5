// Output files: their directory checked by creating a file in it (what access() cannot tell root),
// and each written whole through a temp file renamed over the old one.

import { execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KmoeError } from '../../../shared/errors/kmoe-error.js';
import { DirectoryError, OutputFileError } from '../../../shared/runtime/errors.js';
import { checkOutputDirectory, writeOutputFile } from '../../../shared/runtime/output-file.js';

const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-output-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The KmoeError `f` throws. */
function failure(f: () => void): KmoeError {
  try {
    f();
  } catch (err) {
    if (err instanceof KmoeError) return err;
    throw err;
  }
  throw new Error('did not fail');
}

describe('writeOutputFile', () => {
  it('makes the directory and writes the file, leaving nothing else beside it', () => {
    const file = path.join(dir, 'a', 'b', 'result.json');
    writeOutputFile(file, '{"x":1}\n');
    expect(readFileSync(file, 'utf8')).toBe('{"x":1}\n');
    writeOutputFile(file, new Uint8Array([0x7b, 0x7d]));
    expect(readFileSync(file, 'utf8')).toBe('{}');
    expect(readdirSync(path.dirname(file))).toEqual(['result.json']);
  });

  it('replaces the file by a new one (rename), never rewriting the old one in place', () => {
    const file = path.join(dir, 'replaced.json');
    writeFileSync(file, 'old');
    // A hard link keeps the old file's contents only if the new ones went to another file.
    const link = path.join(dir, 'replaced-link.json');
    linkSync(file, link);
    writeOutputFile(file, 'new');
    expect(readFileSync(file, 'utf8')).toBe('new');
    expect(readFileSync(link, 'utf8')).toBe('old');
  });

  it('writes into a FIFO (or a device: --out /dev/null) in place, never replacing it by a file', async () => {
    const fifo = path.join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    // The reader, another process: killed after a while if nothing is ever written to the FIFO
    // (a rename over it leaves it waiting for a writer), so the test fails instead of hanging.
    const reader = spawn('cat', [fifo]);
    let text = '';
    reader.stdout.on('data', (d: Buffer) => (text += d.toString('utf8')));
    const ended = new Promise<void>((resolve) => reader.once('close', () => resolve()));
    const guard = setTimeout(() => reader.kill('SIGKILL'), 5000);
    writeOutputFile(fifo, '{"x":3}\n');
    await ended;
    clearTimeout(guard);
    expect(text).toBe('{"x":3}\n');
    expect(lstatSync(fifo).isFIFO()).toBe(true);
  });

  it('replaces the target of a symlink, keeping the link', () => {
    const sub = path.join(dir, 'linked');
    mkdirSync(sub);
    writeFileSync(path.join(sub, 'run-5.json'), 'old');
    symlinkSync('run-5.json', path.join(sub, 'latest.json'));
    writeOutputFile(path.join(sub, 'latest.json'), '{"x":4}\n');
    expect(lstatSync(path.join(sub, 'latest.json')).isSymbolicLink()).toBe(true);
    expect(readFileSync(path.join(sub, 'run-5.json'), 'utf8')).toBe('{"x":4}\n');
    expect(readdirSync(sub).sort()).toEqual(['latest.json', 'run-5.json']);
  });

  it('names the file when the write fails, and removes its temp file', () => {
    const parent = path.join(dir, 'clash');
    const target = path.join(parent, 'out.json');
    mkdirSync(target, { recursive: true });
    // rename of the written temp file over a directory fails (EISDIR).
    const err = failure(() => writeOutputFile(target, 'x'));
    expect(err).toBeInstanceOf(OutputFileError);
    expect(err.message).toBe(`cannot write ${target}: EISDIR`);
    expect(err.details['errno']).toBe('EISDIR');
    expect(readdirSync(parent)).toEqual(['out.json']);
  });
});

describe('checkOutputDirectory', () => {
  it('makes no directory: a missing one is checked at its nearest existing ancestor, left as it was', () => {
    const parent = path.join(dir, 'ancestor');
    mkdirSync(parent);
    checkOutputDirectory(path.join(parent, 'fresh', 'results'));
    expect(existsSync(path.join(parent, 'fresh'))).toBe(false);
    // The probes are removed.
    expect(readdirSync(parent)).toEqual([]);
    checkOutputDirectory(parent);
    expect(readdirSync(parent)).toEqual([]);
  });

  it('refuses a directory under a regular file, naming the file', () => {
    const file = path.join(dir, 'plain');
    writeFileSync(file, 'x');
    const err = failure(() => checkOutputDirectory(path.join(file, 'a', 'b')));
    expect(err).toBeInstanceOf(DirectoryError);
    expect(err.message).toBe(
      `cannot make directory ${path.join(file, 'a', 'b')}: ${file} is a file, not a directory`,
    );
  });

  it('refuses a directory that exists but takes no new files, even for root (/sys)', () => {
    const err = failure(() => checkOutputDirectory('/sys'));
    expect(err).toBeInstanceOf(OutputFileError);
    expect(err.message).toBe('cannot write in /sys: permission denied (EACCES)');
    expect(err.hint).toBe('write the output under a directory this user can create files in');
  });

  it('refuses a directory that cannot be made, naming the level (/proc)', () => {
    const err = failure(() => checkOutputDirectory('/proc/kmoe-no-such-dir/out'));
    expect(err).toBeInstanceOf(DirectoryError);
    expect(err.message).toMatch(/^cannot make directory \/proc\/kmoe-no-such-dir: /);
  });
});
