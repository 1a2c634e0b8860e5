// vitest globalSetup: compiles the sources into dist/ once before any test file runs, so that the
// kmoe processes tests spawn run the compiled CLI of the sources under test (what `npx kmoe`
// runs), without tsx transpiling every child process and thread at startup (~0.45 s each).

import { spawnSync } from 'node:child_process';
import { ROOT } from './paths.js';

export default function buildDist(): void {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['run', '--silent', 'build'], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(
      `npm run build failed (${r.error?.message ?? `exit ${r.status}`}); tests need dist/:\n${r.stdout}${r.stderr}`,
    );
  }
}
