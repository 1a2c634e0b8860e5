// Locates kmoe's own entry points (thread scripts, the CLI) whether kmoe runs from the compiled
// dist/ tree or from TypeScript sources (tests, development), where tsx must be loaded explicitly.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

function fromSource(base: string): boolean {
  return base.endsWith('.ts');
}

/**
 * A thread's stack. onnxruntime-node 1.30 creating its first session in a worker thread recurses
 * deeper the longer the process's command line is: with Node's default 4 MB, `kmoe generate
 * --prompt` of ~15 KB of text crashed the process (SIGSEGV inside libonnxruntime); 16 MB held 20 KB
 * and not 120 KB; 64 MB held 131,000 characters, above Linux's limit for one argument (128 KiB).
 * Only the pages a thread touches are committed.
 */
const THREAD_STACK_MB = 64;

/** Starts a worker thread running `relative` (no extension), resolved against the module at `base`. */
export function startThread(base: string, relative: string): Worker {
  const resourceLimits = { stackSizeMb: THREAD_STACK_MB };
  if (!fromSource(base)) return new Worker(new URL(`${relative}.js`, base), { resourceLimits });
  // Node 20 does not apply `--import tsx` from a worker's execArgv before loading its entry, so a
  // tiny bootstrap registers tsx's loader first and then imports the TypeScript entry.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const target = new URL(`${relative}.ts`, base).href;
  const code = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); })`;
  return new Worker(code, { eval: true, resourceLimits });
}

/** argv (after `node`) that starts the kmoe CLI, e.g. for spawning worker processes. */
export function cliArgv(): string[] {
  const here = import.meta.url;
  const cli = fileURLToPath(new URL(`../../coordinator/cli/main${fromSource(here) ? '.ts' : '.js'}`, here));
  return fromSource(here) ? ['--import', 'tsx', cli] : [cli];
}

export function projectRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // shared/runtime in sources, dist/shared/runtime when compiled.
  return path.resolve(here, here.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');
}
