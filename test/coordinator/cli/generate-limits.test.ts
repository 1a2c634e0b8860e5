// `kmoe generate` at its edges, as the real CLI process: a prompt longer than the context (a long
// command line once crashed onnxruntime's first session in the engine thread), --max-tokens
// beyond the context (refused as the server refuses it, not cut short), and a reader that closes
// the pipe mid-generation (`| head`; exiting mid-call once aborted the process).

import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../helpers/cli.js';
import { KMOE_ARGV, MODEL_DIR, ROOT } from '../../helpers/paths.js';

describe('kmoe generate limits', () => {
  it('refuses a prompt longer than the context, given as a ~100 KB argument, with a usage error', async () => {
    const prompt = 'hello world '.repeat(8000);
    const r = await runCli(['generate', '--model', MODEL_DIR, '--prompt', prompt, '--max-tokens', '2']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(
      /^kmoe generate: error: the prompt is \d+ tokens; this model's context is 4096 positions, leaving no room to generate$/m,
    );
    expect(r.stdout).toBe('');
  });

  it('refuses --max-tokens beyond what the context leaves, naming the room', async () => {
    const r = await runCli(['generate', '--model', MODEL_DIR, '--prompt', 'hi', '--max-tokens', '99999999']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(
      /--max-tokens is 99999999, but the prompt's (\d+) tokens leave room for at most (\d+) in this model's context of 4096/,
    );
    const [, prompt, room] = /prompt's (\d+) tokens leave room for at most (\d+)/.exec(r.stderr)!;
    expect(Number(prompt) + Number(room)).toBe(4096);
  });

  it('stops quietly, exit 0, when its reader closes the pipe mid-generation (5 runs)', async () => {
    for (let run = 0; run < 5; run++) {
      const child = spawn(
        process.execPath,
        [...KMOE_ARGV, 'generate', '--model', MODEL_DIR, '--prompt', 'def', '--max-tokens', '400'],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
      });
      // Like `| head -c 1`: read the first bytes, then close the read end while tokens still come.
      let got = 0;
      child.stdout.on('data', (d: Buffer) => {
        got += d.length;
        child.stdout.destroy();
      });
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
        child.on('close', (c, s) => resolve([c, s])),
      );
      expect(got).toBeGreaterThan(0);
      expect({ run, code, signal, stderr }).toEqual({ run, code: 0, signal: null, stderr: '' });
    }
  });
});
