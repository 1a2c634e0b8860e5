// `npx kmoe serve &` then `kill <npx pid>` (what `kill %1` does without job control) stops the
// whole tree: npm, its shell, the server and its two worker processes, and frees the port. Runs
// the README's command for real (npx resolves the compiled bin in dist/: `npm run build` first).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { stopWithParent } from '../../../shared/runtime/stop-with-parent.js';
import { MODEL_DIR, ROOT } from '../../helpers/paths.js';

/** Every live descendant of `pid`, from /proc (Linux). */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    // Fields after the parenthesised command name: state, ppid, ...
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

function alive(pid: number): boolean {
  try {
    const state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function until(what: string, ok: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (!(await ok())) {
    if (performance.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const leftovers: number[] = [];
afterAll(() => {
  for (const pid of leftovers) if (alive(pid)) process.kill(pid, 'SIGKILL');
});

describe('stopWithParent', () => {
  it('does nothing for a process npm did not start', () => {
    const stop = stopWithParent({});
    stop();
    expect(alive(process.pid)).toBe(true);
  });

  it('stops `npx kmoe serve` and its workers when npx is sent SIGTERM', async () => {
    const npx = spawn('npx', ['kmoe', 'serve', '--model', MODEL_DIR, '--port', '0'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    npx.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    npx.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const listening = () => /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout);
    await until(`kmoe serve listening (stderr: ${stderr.slice(-2000)})`, () => listening() !== null, 120_000);
    const port = Number(listening()![1]);
    const tree = descendants(npx.pid!);
    leftovers.push(...tree);
    // npm, sh -c kmoe, node (serve) and its two local workers.
    expect(tree.length).toBeGreaterThanOrEqual(3);
    expect(await accepts(port)).toBe(true);

    npx.kill('SIGTERM');
    // Graceful: the server drains (--shutdown-timeout, default 10 s) and stops its workers.
    await until('every process of the tree exited', () => tree.every((p) => !alive(p)), 30_000);
    expect(await accepts(port)).toBe(false);
    expect(stderr).toMatch(/stopped/);
  });
});
