// The CLI checks its flags before it loads any implementation: `--help` and usage errors load no
// package but commander (no onnxruntime, Redis client, WebSocket, logger or schema library), which
// keeps them fast. A module-resolution hook records every package the process resolves.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { KMOE_ARGV, MODEL_DIR, ROOT } from '../../helpers/paths.js';

const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-imports-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hook = path.join(dir, 'hook.mjs');
writeFileSync(
  hook,
  `export async function resolve(spec, ctx, next) {
  const r = await next(spec, ctx);
  const m = /\\/node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(r.url);
  if (m) process._rawDebug('PACKAGE ' + m[1]);
  return r;
}
`,
);
/** A CA file as --redis-ca reads it, and a token file that is not there. */
const ca = path.join(dir, 'ca.pem');
writeFileSync(ca, '-----BEGIN CERTIFICATE-----\n');
const missing = path.join(dir, 'no-such-token');
/** kmoe calibrate with its required flags but --method and --policy. */
const calibrate = ['calibrate', '--model', MODEL_DIR, '--out', path.join(dir, 'profile.json')];
/** Two policies for a command that runs one. */
const twoPolicies = ['--routing', 'topk:1', '--routing', 'topk:2'];
const register = path.join(dir, 'register.mjs');
writeFileSync(
  register,
  `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hook).href)});\n`,
);

/** The packages a CLI run resolves, and its exit code. */
function packagesLoaded(args: readonly string[]): Promise<{ packages: Set<string>; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', register, ...KMOE_ARGV, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const packages = new Set([...stderr.matchAll(/^PACKAGE (\S+)$/gm)].map((m) => m[1]!));
      resolve({ packages, code });
    });
  });
}

describe('kmoe startup', () => {
  it.each([
    [['--help'], 0],
    [['serve', '--help'], 0],
    [['generate', '--model', MODEL_DIR, '--prompt', 'x', '--top-p', '2'], 2],
    [['serve', '--model', MODEL_DIR, '--redis', 'http://h'], 2],
    [['serve', '--model', MODEL_DIR, '--log-level', 'loud'], 2],
    // Flags that cannot go together, checked by the command before it loads its implementation.
    [['serve', '--model', MODEL_DIR, '--workers', 'ws://h:1', '--redis', 'redis://h'], 2],
    [['serve', '--model', MODEL_DIR, '--redis-ca', ca], 2],
    [['worker', '--model', MODEL_DIR, '--experts', '0-3', '--advertise-url', 'ws://h:1'], 2],
    [['generate', '--model', MODEL_DIR, '--prompt', 'x', '--cluster-token-file', missing], 2],
    [['eval', '--model', MODEL_DIR], 2],
    [['eval', '--model', MODEL_DIR, '--ids', 'data/eval/valid.man.u16', '--chart', 'c.svg'], 2],
    [['local-cluster', '--model', MODEL_DIR, '--workers', '2', '--host', '0.0.0.0'], 2],
    [['cluster', 'status', '--redis', 'redis://h', '--redis-ca', ca], 2],
    [['bench', 'serve', '--url', 'http://h:1', '--routing', 'topk:2'], 2],
    // Checks of the flags alone that each command's module made once loaded (now its check hook's).
    [[...calibrate, '--method', 'quality', '--policy', 'skip', '--substitute-ridge', '0.1'], 2],
    [[...calibrate, '--method', 'theory', '--policy', 'entropy', '--alpha', '0.5,0.6'], 2],
    [[...calibrate, '--method', 'percentile', '--policy', 'skip'], 2],
    [['plan', '--model', MODEL_DIR, '--workers', '2', '--placement', '0-3;4-7'], 2],
    [['local-cluster', '--model', MODEL_DIR, '--workers', '0'], 2],
    [['local-cluster', '--model', MODEL_DIR, '--workers', '2', '--port-base', '65535'], 2],
    [['bench', 'adaptive-k-time', '--model', MODEL_DIR], 2],
    [['bench', 'workers', '--model', MODEL_DIR, '--workers', 'ws://h:1'], 2],
    [['generate', '--model', MODEL_DIR, '--prompt', 'x', ...twoPolicies], 2],
    [['serve', '--model', MODEL_DIR, ...twoPolicies], 2],
    [['eval', '--model', MODEL_DIR, '--ids', 'data/eval/valid.man.u16', ...twoPolicies], 2],
    [['synth', '--like', 'mixtral-mid', '--layers', '99', '--out', path.join(dir, 'synth')], 2],
    [['bench', 'model', '--model', MODEL_DIR, '--llama-cpp-flash-attention', 'on'], 2],
    [['bench', 'expert', '--peak', '1,2'], 2],
    [['bench', 'network', '--model', MODEL_DIR, '--routing', 'topk:1'], 2],
    [['generate', '--model', MODEL_DIR, '--prompt', 'x', '--wire', 'bf16'], 2],
    [['eval', '--model', MODEL_DIR, '--ids', 'data/eval/valid.man.u16', '--balance', 'baseline'], 2],
    [['serve', '--model', MODEL_DIR, '--workers', 'ws://h:1', '--expert-weights', 'int8'], 2],
    [
      ['bench', 'adaptive-k-time', '--model', MODEL_DIR, '--routing', 'topk:1', '--dispatch-timeout', '500'],
      2,
    ],
  ] as const)('%j loads no package but commander (exit %i)', async (args, exit) => {
    const { packages, code } = await packagesLoaded(args);
    expect(code).toBe(exit);
    expect([...packages]).toEqual(['commander']);
  });

  it('a command that runs loads its implementation (the hook sees packages)', async () => {
    const { packages, code } = await packagesLoaded([
      'generate',
      '--model',
      MODEL_DIR,
      '--prompt',
      'x',
      '--max-tokens',
      '1',
      '--threads',
      '1',
    ]);
    expect(code).toBe(0);
    expect(packages).toContain('onnxruntime-node');
    expect(packages).toContain('zod');
  });
});
