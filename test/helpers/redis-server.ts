// Starts a real `redis-server` on a free loopback port for integration tests (no persistence, its
// own temp dir), waits until it answers PING, and stops it; `restart()` stops it and starts a new
// one on the same port (the registry-outage test). redis-server has no `--port 0`, so a free port is
// found by binding one and releasing it, with a retry if another process takes it in between.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Everything redis-server wrote so far. */
  output(): string;
  /** Stops it (SIGTERM, then the exit). */
  stop(): Promise<void>;
  /** stop() then start again on the same port, empty. */
  restart(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves true when a PING on a fresh socket answers +PONG (or NOAUTH: up, with a password). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = new Socket();
    let buf = '';
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.once('error', () => done(false));
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG') || buf.startsWith('-NOAUTH'));
    });
    sock.connect(port, '127.0.0.1', () => sock.write('PING\r\n'));
  });
}

interface Running {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
}

function launch(port: number, dir: string, log: { text: string }, password?: string): Running {
  const auth = password === undefined ? [] : ['--requirepass', password];
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      ...auth,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const append = (d: Buffer) => {
    log.text += d.toString();
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, exited };
}

async function waitReady(r: Running, port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (r.child.exitCode !== null || r.child.signalCode !== null) return false;
    if (await ping(port)) return true;
    await new Promise((res) => setTimeout(res, 50));
  }
  return false;
}

/** `password`: started with --requirepass; `url` then carries it (redis://:PASSWORD@...). */
export async function startRedis(opts: { timeoutMs?: number; password?: string } = {}): Promise<RedisServer> {
  // The registry tests need a real server: say how to get one instead of failing on ENOENT.
  if (spawnSync('redis-server', ['--version']).error) {
    throw new Error('redis-server is not installed: apt-get install redis-server (.ci/run installs it)');
  }
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const dir = mkdtempSync(join(tmpdir(), 'kmoe-redis-'));
  const log = { text: '' };
  let port = 0;
  let running: Running | undefined;
  for (let attempt = 0; attempt < 5 && !running; attempt++) {
    port = await freePort();
    const r = launch(port, dir, log, opts.password);
    if (await waitReady(r, port, timeoutMs)) running = r;
    else {
      r.child.kill('SIGKILL');
      await r.exited;
    }
  }
  if (!running) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`redis-server did not start; output:\n${log.text}`);
  }
  let current: Running | undefined = running;
  const stopCurrent = async () => {
    const r = current;
    current = undefined;
    if (!r) return;
    if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGTERM');
    await r.exited;
  };
  return {
    port,
    url: `redis://${opts.password === undefined ? '' : `:${encodeURIComponent(opts.password)}@`}127.0.0.1:${port}`,
    output: () => log.text,
    stop: async () => {
      await stopCurrent();
      rmSync(dir, { recursive: true, force: true });
    },
    restart: async () => {
      await stopCurrent();
      const r = launch(port, dir, log, opts.password);
      if (!(await waitReady(r, port, timeoutMs))) {
        r.child.kill('SIGKILL');
        throw new Error(`redis-server did not restart on port ${port}; output:\n${log.text}`);
      }
      current = r;
    },
  };
}
