// Starts a real `redis-server` on a free loopback port for integration tests (no persistence, its
// own temp dir), waits until it answers PING, and stops it; `restart()` stops it and starts a new
// one on the same port (the registry-outage test). redis-server has no `--port 0`, so a free port is
// found by binding one below the ephemeral range (`restartablePort`, so that `restart()` gets it
// back) and releasing it, with a retry if another process takes it in between.
// With `tls` it listens on a TLS port only (plaintext port 0 = off) and the URL is rediss://.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { restartablePort } from './ports.js';

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

/** The server's TLS files (PEM); clients verify its certificate against `caFile`. */
export interface RedisTls {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
}

/**
 * Why this redis-server cannot listen with TLS (built without it), or undefined if it can: a
 * build without TLS rejects the tls-port directive; one with TLS gets to loading the files.
 */
export function redisTlsUnsupported(): string | undefined {
  const r = spawnSync(
    'redis-server',
    [
      '--port',
      '0',
      '--tls-port',
      '1',
      '--tls-cert-file',
      '/nonexistent',
      '--tls-key-file',
      '/nonexistent',
      '--tls-ca-cert-file',
      '/nonexistent',
    ],
    { encoding: 'utf8', timeout: 10_000 },
  );
  if (r.error) return `redis-server cannot be run: ${r.error.message}`;
  const out = `${r.stdout}${r.stderr}`;
  if (/Failed to load certificate|Failed to configure TLS/.test(out)) return undefined;
  return `this redis-server was built without TLS (it does not accept --tls-port): ${out.trim().split('\n').pop()}`;
}

/** Resolves true when a PING on a fresh socket answers +PONG (or NOAUTH: up, with a password). */
function ping(port: number, tls?: RedisTls): Promise<boolean> {
  return new Promise((resolve) => {
    const sock =
      tls === undefined
        ? new Socket()
        : tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(tls.caFile, 'utf8') });
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
    if (tls === undefined) sock.connect(port, '127.0.0.1', () => sock.write('PING\r\n'));
    else sock.once('secureConnect', () => sock.write('PING\r\n'));
  });
}

interface Running {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
}

function launch(
  port: number,
  dir: string,
  log: { text: string },
  password?: string,
  tls?: RedisTls,
): Running {
  const auth = password === undefined ? [] : ['--requirepass', password];
  // TLS only: the plaintext port is off; clients need no certificate of their own.
  const listen =
    tls === undefined
      ? ['--port', String(port)]
      : [
          '--port',
          '0',
          '--tls-port',
          String(port),
          '--tls-cert-file',
          tls.certFile,
          '--tls-key-file',
          tls.keyFile,
          '--tls-ca-cert-file',
          tls.caFile,
          '--tls-auth-clients',
          'no',
        ];
  const child = spawn(
    'redis-server',
    [...listen, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...auth],
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

async function waitReady(r: Running, port: number, timeoutMs: number, tls?: RedisTls): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (r.child.exitCode !== null || r.child.signalCode !== null) return false;
    if (await ping(port, tls)) return true;
    await new Promise((res) => setTimeout(res, 50));
  }
  return false;
}

/**
 * `password`: started with --requirepass; `url` then carries it (redis://:PASSWORD@...). `tls`:
 * TLS only, `url` is rediss:// (check redisTlsUnsupported() first).
 */
export async function startRedis(
  opts: { timeoutMs?: number; password?: string; tls?: RedisTls } = {},
): Promise<RedisServer> {
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
    port = await restartablePort();
    const r = launch(port, dir, log, opts.password, opts.tls);
    if (await waitReady(r, port, timeoutMs, opts.tls)) running = r;
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
    url: `${opts.tls === undefined ? 'redis' : 'rediss'}://${opts.password === undefined ? '' : `:${encodeURIComponent(opts.password)}@`}127.0.0.1:${port}`,
    output: () => log.text,
    stop: async () => {
      await stopCurrent();
      rmSync(dir, { recursive: true, force: true });
    },
    restart: async () => {
      await stopCurrent();
      const r = launch(port, dir, log, opts.password, opts.tls);
      if (!(await waitReady(r, port, timeoutMs, opts.tls))) {
        r.child.kill('SIGKILL');
        throw new Error(`redis-server did not restart on port ${port}; output:\n${log.text}`);
      }
      current = r;
    },
  };
}
