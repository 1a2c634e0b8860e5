// deploy/netns/kmoe-netns.sh end to end: namespaces up, RTT measured, an htb-limited link that
// really limits, and nothing left behind, also after a failing command or a SIGTERM. Needs root
// and `ip netns`; elsewhere the suite is skipped with the script's own reason printed.

import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/paths.js';

const SCRIPT = path.join(ROOT, 'deploy/netns/kmoe-netns.sh');
const PROBE = path.join(ROOT, 'deploy/netns/probe.mjs');

const check = spawnSync(SCRIPT, ['check'], { encoding: 'utf8' });
const canRun = check.status === 0;
if (!canRun) {
  console.warn(
    `skipping the netns tests: ${check.stderr.trim() || check.error?.message || `exit ${check.status}`}`,
  );
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runScript(
  args: readonly string[],
  opts: { killAfterMs?: number; signal?: NodeJS.Signals; againAfterMs?: number; group?: boolean } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    // `group`: the script leads a process group and the signal goes to all of it, as a terminal's
    // Ctrl-C reaches every process of the foreground job (the script's own children too).
    const child = spawn(SCRIPT, args, {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: opts.group === true,
    });
    const send = (signal: NodeJS.Signals) => {
      if (opts.group !== true) {
        child.kill(signal);
        return;
      }
      try {
        process.kill(-child.pid!, signal);
      } catch (err) {
        // The whole group has ended (the script and its children exited on the first signal, as
        // a terminal's second Ctrl-C can come after): nobody left to signal. Anything else is a
        // real failure.
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    };
    let stdout = '';
    let stderr = '';
    let signalled = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      // Signal only once the network is up, so the test exercises cleanup of a live network.
      if (opts.killAfterMs !== undefined && /network up/.test(stderr) && !signalled) {
        signalled = true;
        const signal = opts.signal ?? 'SIGTERM';
        setTimeout(() => {
          send(signal);
          // A Ctrl-C reaches the script twice when its caller forwards it too (kmoe bench network).
          if (opts.againAfterMs !== undefined) setTimeout(() => send(signal), opts.againAfterMs);
        }, opts.killAfterMs);
      }
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kmoe-netns.sh ${args.join(' ')} timed out; stderr:\n${stderr}`));
    }, 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function namespacesNamed(prefix: string): string[] {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
  return list
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(`${prefix}-`));
}

const name = (tag: string) => `kt${tag}${process.pid % 100000}`;

describe('kmoe-netns.sh usage', () => {
  it('refuses addresses outside private ranges and bad rates before touching anything', async () => {
    const a = await runScript(['run', '--subnet', '8.8.8']);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/--subnet must be 10\.X\.Y or 192\.168\.X/);
    const b = await runScript(['run', '--rate', 'fast']);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/--rate must be like 100mbit/);
  });
});

describe.skipIf(!canRun)('kmoe-netns.sh on this host', () => {
  it('limits a link to 100 Mbit/s, reports RTT, and removes its namespaces', async () => {
    const n = name('a');
    const r = await runScript([
      'run',
      '--name',
      n,
      '--workers',
      '1',
      '--rate',
      '100mbit',
      '--rtt-count',
      '5',
      '--worker-cmd',
      `exec node ${PROBE} sink --port 5201`,
      '--wait-port',
      '5201',
      '--coordinator-cmd',
      `node ${PROBE} send --host $KMOE_NETNS_WORKER_ADDRS --port 5201 --bytes 6000000`,
    ]);
    expect(r.stderr).toMatch(new RegExp(`worker 0 ${n}-w0 10\\.213\\.0\\.10`));
    expect(r.stderr).toMatch(/all workers accept connections on port 5201/);
    expect(r.code).toBe(0);
    const rtt = /rtt worker=0 method=(tcp|icmp) min_ms=([\d.]+)/.exec(r.stdout);
    expect(rtt).not.toBeNull();
    expect(Number(rtt![2])).toBeGreaterThan(0);
    const sent = r.stdout
      .split('\n')
      .filter((l) => l.includes('"role":"send"'))
      .map((l) => JSON.parse(l) as { bytes: number; mbit_per_s: number });
    expect(sent).toHaveLength(1);
    expect(sent[0]!.bytes).toBe(6_000_000);
    // The limiter's correctness, not a speed target: 6 MB cannot cross a 100 Mbit/s htb class
    // much faster than 100 Mbit/s (htb's burst allowance is a few KB; 1.3x leaves room for it).
    expect(sent[0]!.mbit_per_s).toBeLessThan(130);
    expect(namespacesNamed(n)).toEqual([]);
  });

  it('cleans up after a failing command and after SIGTERM', async () => {
    const n1 = name('b');
    const failed = await runScript([
      'run',
      '--name',
      n1,
      '--workers',
      '2',
      '--rtt-count',
      '0',
      '--coordinator-cmd',
      'exit 7',
    ]);
    expect(failed.code).toBe(7);
    expect(failed.stderr).toMatch(/removed namespaces/);
    expect(namespacesNamed(n1)).toEqual([]);

    const n2 = name('c');
    const killed = await runScript(
      ['run', '--name', n2, '--workers', '1', '--rtt-count', '0', '--keep-going', '30'],
      {
        killAfterMs: 100,
      },
    );
    expect(killed.code).toBe(143);
    expect(killed.stderr).toMatch(/removed namespaces/);
    expect(namespacesNamed(n2)).toEqual([]);
  });

  it('finishes its cleanup after a Ctrl-C to its whole job that comes again during the cleanup', async () => {
    const n = name('d');
    const killed = await runScript(
      ['run', '--name', n, '--workers', '2', '--rtt-count', '0', '--keep-going', '30'],
      { killAfterMs: 100, signal: 'SIGINT', againAfterMs: 50, group: true },
    );
    expect(killed.code).toBe(130);
    expect(killed.stderr).toMatch(/removed namespaces/);
    expect(namespacesNamed(n)).toEqual([]);
  });

  it('fails cleanly when setup fails, removing only the namespaces it created', async () => {
    const n = name('d');
    // Someone else's namespace with the name the coordinator's would get.
    expect(spawnSync('ip', ['netns', 'add', `${n}-c`]).status).toBe(0);
    try {
      const r = await runScript(['run', '--name', n, '--workers', '1', '--rtt-count', '0']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`namespace ${n}-c already exists`));
      expect(r.stderr).toMatch(new RegExp(`removed namespaces ${n}-sw$`, 'm'));
      expect(namespacesNamed(n)).toEqual([`${n}-c`]);
    } finally {
      spawnSync('ip', ['netns', 'del', `${n}-c`]);
    }
  });
});
