// Ctrl-C at a terminal signals the whole foreground process group. `kmoe serve` must drain: the
// local workers sit in their own process group, so the signal reaches only the server, which
// finishes the in-flight request, then stops its workers, and nothing is left running.

import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { type ServeProcess, startServe } from './serve-process.js';

let server: ServeProcess | undefined;

afterAll(async () => {
  await server?.stop();
});

/** The `kmoe worker` processes started by `pid`. */
function workerPids(pid: number): number[] {
  let out = '';
  try {
    out = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(pid)], { encoding: 'utf8' });
  } catch {
    return []; // ps exits 1 when there are none
  }
  return out
    .split('\n')
    .filter((line) => / worker --model /.test(line))
    .map((line) => Number(line.trim().split(/\s+/)[0]));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('Ctrl-C on kmoe serve', () => {
  it('SIGINT to the process group drains the in-flight request, then everything exits', async () => {
    server = await startServe(['--workers', '1', '--shutdown-timeout', '120'], undefined, undefined, {
      detached: true,
    });
    const { url, child } = server;
    const workers = workerPids(child.pid!);
    expect(workers.length).toBe(1);

    // Long enough (seconds) that the SIGINT lands mid-decode.
    const maxTokens = 1500;
    const response = fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'tiny-mixtral',
        prompt: 'The',
        max_tokens: maxTokens,
        temperature: 0,
        kmoe: { ignore_eos: true },
      }),
    });
    for (;;) {
      const h = (await (await fetch(`${url}/health`)).json()) as { sequences: { running: number } };
      if (h.sequences.running === 1) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    process.kill(-child.pid!, 'SIGINT');

    const res = await response;
    const body = (await res.json()) as {
      choices: { text: string; finish_reason: string }[];
      usage: { completion_tokens: number };
    };
    expect(res.status).toBe(200);
    expect(body.choices[0]!.finish_reason).toBe('length');
    expect(body.usage.completion_tokens).toBe(maxTokens);
    expect(body.choices[0]!.text.length).toBeGreaterThan(0);
    expect(await server.exited).toBe(0);

    const stderr = server.stderr();
    expect(stderr).toMatch(/"signal":"SIGINT"/);
    expect(stderr).toMatch(/"cancelled":0,"msg":"drained"/);
    // A clean shutdown logs no errors (pino level 50) and no Node or fastify warnings.
    expect(stderr).not.toMatch(/"level":50/);
    expect(stderr).not.toMatch(/Deprecation|\(node:/);

    const deadline = Date.now() + 15_000;
    while (workers.some(alive) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 100));
    expect(workers.filter(alive)).toEqual([]);
  }, 240_000);
});
