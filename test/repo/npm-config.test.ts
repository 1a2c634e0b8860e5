// npm in this project prints no warnings: no unknown project config (an `.npmrc` key npm does not
// know warns on every command) and every dependency install script is decided in package.json's
// `allowScripts` (else every install lists them). onnxruntime-node loads without its postinstall.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const exec = promisify(execFile);
// npm's new-version notice is about this machine's npm, not the project.
const npm = (...args: string[]) => exec('npm', ['--no-update-notifier', ...args], { cwd: root });

describe('npm in this project', () => {
  it('prints nothing but the answer to a plain command', async () => {
    const { stdout, stderr } = await npm('pkg', 'get', 'name');
    expect(stdout.trim()).toBe('"kmoe"');
    expect(stderr).toBe('');
  });

  it('has every install script in the tree decided by allowScripts', async () => {
    const { stdout, stderr } = await npm('install-scripts', 'ls');
    expect(stdout.trim()).toBe('No packages with unreviewed install scripts.');
    expect(stderr).toBe('');
  });

  it('pins onnxruntime-node exactly, since shared/onnx imports its private binding', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const spec = pkg.dependencies['onnxruntime-node']!;
    expect(spec).toMatch(/^\d+\.\d+\.\d+$/);
    const ort = await import('onnxruntime-node');
    expect(ort.env.versions.node).toBe(spec);
  });
});
