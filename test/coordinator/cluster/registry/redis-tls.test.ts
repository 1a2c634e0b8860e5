// The registry over TLS with a real redis-server listening on a TLS port only, with a password and
// a certificate signed by a throwaway CA: a worker registers over rediss://, `kmoe serve` finds it
// and serves a completion, `kmoe cluster status` lists it; without --redis-ca the certificate does
// not verify and the commands fail saying so (no plaintext fallback, no unverified connection);
// the password appears in no line any of the processes writes. Skipped, with the reason, when
// this redis-server was built without TLS.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, runCli } from '../../../helpers/cli.js';
import { type RedisServer, redisTlsUnsupported, startRedis } from '../../../helpers/redis-server.js';
import { makeTestCertificates, type TestCertificates } from '../../../helpers/tls-certs.js';
import { startWorker, type WorkerProcess } from '../../../helpers/worker-process.js';
import { type ServeProcess, startServe } from '../../server/serve-process.js';

const noTls = redisTlsUnsupported();
if (noTls !== undefined) console.warn(`skipping the rediss:// tests: ${noTls}`);

// Distinctive, so finding it in any output cannot be a coincidence; URL-safe as written.
const PASSWORD = 'kmoe-tls-Pw-93f1c2e7';

let certs: TestCertificates;
let redis: RedisServer;
let worker: WorkerProcess | undefined;
let server: ServeProcess | undefined;
/** Every CLI run's output, for the secret check at the end. */
const outputs: CliResult[] = [];
/** The stderr of processes that failed to start. */
const refused: string[] = [];

async function cli(args: readonly string[]): Promise<CliResult> {
  const r = await runCli(args);
  outputs.push(r);
  return r;
}

beforeAll(async () => {
  if (noTls !== undefined) return;
  certs = makeTestCertificates();
  redis = await startRedis({
    password: PASSWORD,
    tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile },
  });
});

afterAll(async () => {
  await server?.stop();
  await worker?.stop();
  await redis?.stop();
  certs?.remove();
});

describe.skipIf(noTls !== undefined)('cluster registry over TLS (rediss://, real redis-server)', () => {
  it('the URL is rediss:// with the password; the server has no plaintext port', () => {
    expect(redis.url).toBe(`rediss://:${PASSWORD}@127.0.0.1:${redis.port}`);
  });

  it('without --redis-ca the self-signed chain does not verify: exit 1, says so, no fallback', async () => {
    const r = await cli(['cluster', 'status', '--redis', redis.url]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(
      /TLS certificate verify failed \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)/,
    );
    expect(r.stderr).toContain('--redis-ca');
    expect(r.stdout).toBe('');
  });

  it('--redis-ca needs a rediss:// URL (usage error, exit 2)', async () => {
    const r = await cli([
      'cluster',
      'status',
      '--redis',
      `redis://:${PASSWORD}@127.0.0.1:${redis.port}`,
      '--redis-ca',
      certs.caFile,
    ]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('--redis-ca is for Redis over TLS');
  });

  it('a worker registers over rediss:// with --redis-ca', async () => {
    worker = await startWorker('0-7', ['--redis', redis.url, '--redis-ca', certs.caFile]);
    expect(worker.experts).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(worker.stderr()).toContain(`registry rediss://:***@127.0.0.1:${redis.port}`);
  });

  it('kmoe serve --redis rediss://... finds the worker and serves a completion', async () => {
    server = await startServe(['--redis', redis.url, '--redis-ca', certs.caFile, '--wire', 'fp32']);
    const ready = (await (await fetch(`${server.url}/ready`)).json()) as {
      experts: { covered: boolean; description: string };
    };
    expect(ready.experts.covered).toBe(true);
    expect(ready.experts.description).toContain(worker!.url);
    const res = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-mixtral', prompt: 'def fib(n):', max_tokens: 6, temperature: 0 }),
    });
    const body = (await res.json()) as { choices: { text: string }[]; usage: { completion_tokens: number } };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.usage.completion_tokens).toBe(6);
    expect(body.choices[0]!.text.length).toBeGreaterThan(0);
  });

  it('kmoe cluster status --redis rediss://... lists the worker (text and JSON)', async () => {
    const json = await cli(['cluster', 'status', '--redis', redis.url, '--redis-ca', certs.caFile, '--json']);
    expect(json.code, json.stderr).toBe(0);
    const s = JSON.parse(json.stdout) as {
      registry: string;
      workers: { url: string; experts: number[] }[];
      models: { covered: boolean }[];
    };
    expect(s.registry).toBe(`rediss://:***@127.0.0.1:${redis.port}`);
    expect(s.workers.map((w) => [w.url, w.experts])).toEqual([[worker!.url, [0, 1, 2, 3, 4, 5, 6, 7]]]);
    expect(s.models[0]!.covered).toBe(true);
    const text = await cli(['cluster', 'status', '--redis', redis.url, '--redis-ca', certs.caFile]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(worker!.url);
  });

  it('kmoe serve and kmoe worker without --redis-ca fail at start, naming the verify failure', async () => {
    const serve = await startServe(['--redis', redis.url]).catch((e: Error) => e);
    const lone = await startWorker('0-3', ['--redis', redis.url]).catch((e: Error) => e);
    for (const failed of [serve, lone]) {
      expect(failed).toBeInstanceOf(Error);
      // The helpers' messages carry the process's whole stderr: checked for the password below.
      refused.push((failed as Error).message);
      expect((failed as Error).message).toMatch(/exited with 1 before .*TLS certificate verify failed/s);
    }
  });

  it('the password is in no line of any process (worker, serve, cluster status)', async () => {
    // The SIGTERM shutdown logs too: stop first, then read everything.
    expect(await server!.stop()).toBe(0);
    expect(await worker!.stop()).toBe(0);
    const streams: [string, string][] = [
      ['worker stdout', worker!.stdout()],
      ['worker stderr', worker!.stderr()],
      ['serve stdout', server!.stdout()],
      ['serve stderr', server!.stderr()],
      ...refused.map((text, i): [string, string] => [`refused ${i} stderr`, text]),
      ...outputs.flatMap((r, i): [string, string][] => [
        [`cli ${i} stdout`, r.stdout],
        [`cli ${i} stderr`, r.stderr],
      ]),
    ];
    for (const [name, text] of streams) {
      expect(text.includes(PASSWORD), `${name} contains the password`).toBe(false);
    }
    // The checks above looked at real output: the processes did log.
    expect(worker!.stderr().length).toBeGreaterThan(0);
    expect(server!.stderr().length).toBeGreaterThan(0);
  });
});
