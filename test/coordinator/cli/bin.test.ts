// The README's install commands in the order a user runs them: the build (what `npm ci` runs
// through `prepare`) must leave the bin executable, so that `npx kmoe` works right after it.
// tsc writes new files without the execute bit; the bin is removed first so the test sees a
// freshly written file, as on a fresh clone.

import { execFile } from 'node:child_process';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../../helpers/paths.js';

const run = promisify(execFile);

describe('the kmoe bin', () => {
  it('is executable after npm run build, and npx kmoe --help works', async () => {
    const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { bin: { kmoe: string } };
    expect(pkg.bin.kmoe).toBe('dist/coordinator/cli/main.js');
    const bin = `${ROOT}${pkg.bin.kmoe}`;
    rmSync(bin, { force: true });
    await run('npm', ['run', 'build'], { cwd: ROOT, timeout: 300_000 });
    expect(statSync(bin).mode & 0o111).toBe(0o111);
    const help = await run('npx', ['kmoe', '--help'], { cwd: ROOT, timeout: 120_000 });
    expect(help.stdout).toMatch(/^Usage: kmoe /m);
    expect(help.stdout).toMatch(/^ {2}generate /m);
    // The bin runs directly too (its shebang), as an installed `kmoe` would.
    const direct = await run(bin, ['--version'], { cwd: ROOT });
    expect(direct.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  }, 600_000);
});
