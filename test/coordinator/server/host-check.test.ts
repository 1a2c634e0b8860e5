// The DNS rebinding guard (coordinator/server/host-check.ts): the policy for each listen address
// and key, Host header parsing, and real `kmoe serve` processes answering or refusing requests by
// their Host header.

import http from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import {
  canonicalHost,
  checkAllowedHost,
  hostAllowed,
  hostCheckFor,
  hostnameOf,
  requestAuthority,
} from '../../../coordinator/server/host-check.js';
import { runCli } from '../../helpers/cli.js';
import { MODEL_DIR } from '../../helpers/paths.js';
import { rawRequest } from '../../helpers/raw-http.js';
import { type ServeProcess, startServe } from './serve-process.js';

describe('host check policy', () => {
  it('checks only a loopback listener without an API key, unless told any host', () => {
    expect(hostCheckFor('127.0.0.1', false, []).kind).toBe('loopback');
    expect(hostCheckFor('localhost', false, []).kind).toBe('loopback');
    expect(hostCheckFor('::1', false, []).kind).toBe('loopback');
    expect(hostCheckFor('0:0::1', false, []).kind).toBe('loopback');
    expect(hostCheckFor('127.0.0.1', true, []).kind).toBe('any');
    expect(hostCheckFor('0.0.0.0', false, []).kind).toBe('any');
    expect(hostCheckFor('::', false, []).kind).toBe('any');
    expect(hostCheckFor('192.168.1.5', false, []).kind).toBe('any');
    expect(hostCheckFor('127.0.0.1', false, ['*']).kind).toBe('any');
    // Names given turn it on anywhere (a container on 0.0.0.0 published on the host's loopback).
    expect(hostCheckFor('0.0.0.0', false, ['coordinator'])).toEqual({
      kind: 'loopback',
      extra: new Set(['coordinator']),
    });
    expect(hostCheckFor('0.0.0.0', true, ['coordinator']).kind).toBe('any');
  });

  it('takes host names and addresses for --allowed-hosts, not ports or URLs', () => {
    for (const ok of [
      '*',
      'coordinator',
      'proxy.example',
      'proxy.example.',
      '10.0.0.5',
      '[::1]',
      'fe80::1',
      'my_host',
    ])
      expect(checkAllowedHost(ok), ok).toBeUndefined();
    // Each refusal says what is wrong with the value, and only that.
    for (const [bad, problem] of [
      [
        'proxy.example:8080',
        /takes host names or addresses without a port \(or '\*'\), got "proxy.example:8080"/,
      ],
      ['[::1]:80', /without a port/],
      ['http://proxy.example', /not URLs or paths/],
      ['a/b', /not URLs or paths/],
      ['', /^--allowed-hosts: "" is not a valid host name or address$/],
      ['-x', /"-x" is not a valid host name or address/],
      ['a b', /"a b" is not a valid host name or address/],
      ['999.1.1.1', /^--allowed-hosts: "999\.1\.1\.1" is not a valid host name or address$/],
    ] as const)
      expect(checkAllowedHost(bad), bad).toMatch(problem);
  });

  it('parses Host headers and answers loopback names and the allowed ones only', () => {
    expect(hostnameOf('LocalHost:8000')).toBe('localhost');
    expect(hostnameOf('[::1]:8000')).toBe('::1');
    expect(hostnameOf('example.com.')).toBe('example.com');
    expect(hostnameOf('[::1')).toBeUndefined();
    // Canonical forms, as a browser's URL parser writes them.
    expect(hostnameOf('127.1:8000')).toBe('127.0.0.1');
    expect(hostnameOf('[::0:1]')).toBe('::1');
    expect(hostnameOf('[0:0:0:0:0:0:0:1]:80')).toBe('::1');
    expect(hostnameOf('0x7f.1')).toBe('127.0.0.1');
    expect(hostnameOf('[127.0.0.1]')).toBeUndefined();
    expect(canonicalHost('user@localhost')).toBeUndefined();
    expect(canonicalHost('::1')).toBe('::1');
    const check = hostCheckFor('127.0.0.1', false, ['Proxy.Example.']);
    for (const ok of [
      'localhost',
      'localhost:1',
      'a.localhost',
      '127.0.0.1:8000',
      '127.1.2.3',
      '[::1]:9',
      'proxy.example:443',
      'PROXY.example.',
      // Valid non-standard spellings of loopback addresses.
      '[::0:1]',
      '[0:0:0:0:0:0:0:1]:8000',
      '127.1',
      '127.1:8000',
      '0x7f.0.0.1',
      '2130706433',
      // Ports as the WHATWG URL parser takes them: leading zeros, up to 65535, or none after ':'.
      '127.0.0.1:65535',
      'localhost:00080',
      'localhost:0000000000000000000000080',
      '[::1]:0',
      'localhost:',
    ])
      expect(hostAllowed(check, ok), ok).toBe(true);
    for (const bad of [
      'attacker.example',
      'attacker.example:8000',
      '127.0.0.256',
      '127.0.0.1.attacker.example',
      'localhost.attacker.example',
      '[::2]',
      '',
      '[::1',
      // Malformed values whose first part is a loopback name (none comes from a browser).
      'localhost:80@evil.com',
      '[::1].evil.com',
      '[::1]evil.com',
      '[localhost]',
      'localhost:evil',
      '.localhost',
      'a..localhost',
      '[127.0.0.1]',
      '128.1',
      '[::0:2]',
      // Ports the URL parser refuses (above 65535, signed, not decimal): no browser sends them.
      '127.0.0.1:99999',
      'localhost:65536',
      '[::1]:65536',
      `localhost:${'9'.repeat(400)}`,
      'localhost:+80',
      'localhost:-1',
      'localhost:0x50',
      '127.0.0.1:abc',
      // IPv6 zone ids: not in RFC 9110's Host grammar.
      '[fe80::1%25lo]',
      '[::1%25lo]',
    ])
      expect(hostAllowed(check, bad), bad).toBe(false);
    // No Host header: HTTP/1.0, which no browser sends.
    expect(hostAllowed(check, undefined)).toBe(true);
  });

  it("takes an absolute-form target's authority over the Host header (RFC 9112)", () => {
    expect(requestAuthority('http://evil.example/v1/models', 'localhost')).toBe('evil.example');
    expect(requestAuthority('HTTP://[::1]:8000?x', 'evil.example')).toBe('[::1]:8000');
    expect(requestAuthority('http://user@localhost/', 'localhost')).toBe('user@localhost');
    expect(hostAllowed(hostCheckFor('127.0.0.1', false, []), 'user@localhost')).toBe(false);
    expect(requestAuthority('/v1/models', 'localhost:8000')).toBe('localhost:8000');
    expect(requestAuthority('/v1/models', undefined)).toBeUndefined();
  });
});

/** GET `path` with this Host header; the status and the error code, if any. */
function get(url: string, path: string, host: string, headers: Record<string, string> = {}) {
  const { hostname, port } = new URL(url);
  return new Promise<{ status: number; code: string | undefined }>((resolve, reject) => {
    const req = http.request({ hostname, port, path, headers: { host, ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => {
        let code: string | undefined;
        try {
          code = (JSON.parse(body) as { error?: { code?: string } }).error?.code;
        } catch {
          code = undefined;
        }
        resolve({ status: res.statusCode!, code });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('kmoe serve and the Host header', () => {
  const servers: ServeProcess[] = [];
  afterAll(async () => {
    for (const s of servers) expect(await s.stop()).toBe(0);
  });

  it('on loopback without a key: refuses other names on every endpoint, answers loopback ones', async () => {
    const server = await startServe(['--workers', '0']);
    servers.push(server);
    const port = new URL(server.url).port;
    for (const path of ['/v1/models', '/health', '/metrics']) {
      expect(await get(server.url, path, `attacker.example:${port}`)).toEqual({
        status: 403,
        code: 'host_not_allowed',
      });
    }
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, 'localhost', `127.1:${port}`, '[::0:1]'])
      expect((await get(server.url, '/v1/models', host)).status, host).toBe(200);
    // A port past 65535 is as malformed as one that is no number.
    for (const host of ['127.0.0.1:99999', 'localhost:65536', '127.0.0.1:abc', 'localhost:+80'])
      expect(await get(server.url, '/v1/models', host), host).toEqual({
        status: 403,
        code: 'host_not_allowed',
      });
    expect(server.stderr()).toMatch(/"hosts":"loopback names only \(no API key\)"/);
    // Two Host headers are refused (RFC 9112), whichever comes first: Node kept the first.
    for (const hosts of [
      ['localhost', 'attacker.example'],
      ['attacker.example', 'localhost'],
    ]) {
      const twice = await rawRequest(server.url, [
        `GET /v1/models HTTP/1.1\r\nHost: ${hosts[0]}\r\nHost: ${hosts[1]}\r\n\r\n`,
      ]);
      expect(twice.status, hosts.join(', ')).toBe(400);
      expect(twice.json).toMatchObject({ error: { code: 'duplicate_host' } });
    }
    // HTTP/1.1 without Host: an OpenAI-style 400 with a request id (Node's own was a bare 400).
    const none = await rawRequest(server.url, ['GET /v1/models HTTP/1.1\r\n\r\n']);
    expect(none.status).toBe(400);
    expect(none.json).toMatchObject({ error: { code: 'missing_host' } });
    expect(none.headers['x-request-id']).toMatch(/^[\w.:-]+$/);
  });

  it('--allowed-hosts adds names; an API key makes the key the guard instead', async () => {
    const proxied = await startServe(['--workers', '0', '--allowed-hosts', 'proxy.example']);
    servers.push(proxied);
    expect((await get(proxied.url, '/v1/models', 'proxy.example')).status).toBe(200);
    expect((await get(proxied.url, '/v1/models', 'attacker.example')).status).toBe(403);

    const bad = await runCli(['serve', '--model', MODEL_DIR, '--allowed-hosts', 'proxy.example:8080']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--allowed-hosts takes host names or addresses without a port/);
    expect(bad.stderr).toMatch(/hint: give DNS names \(proxy\.example\) or IP addresses/);
    const noAddress = await runCli(['serve', '--model', MODEL_DIR, '--allowed-hosts', '999.1.1.1']);
    expect(noAddress.code).toBe(2);
    expect(noAddress.stderr).toMatch(/--allowed-hosts: "999\.1\.1\.1" is not a valid host name or address\n/);

    const keyed = await startServe(['--workers', '0', '--api-key', 'k', '--allowed-hosts', 'proxy.example']);
    servers.push(keyed);
    expect(await get(keyed.url, '/v1/models', 'attacker.example')).toEqual({
      status: 401,
      code: 'invalid_api_key',
    });
    expect(
      (await get(keyed.url, '/v1/models', 'attacker.example', { authorization: 'Bearer k' })).status,
    ).toBe(200);
    expect(keyed.stderr()).toMatch(/"hosts":"any Host"/);
    // The names it was given do nothing with a key, and it says so at startup.
    expect(keyed.stderr()).toMatch(
      /"msg":"--allowed-hosts proxy.example has no effect with --api-key: a server with a key answers any Host that sends the key"/,
    );
  });
});
