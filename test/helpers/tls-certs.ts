// A throwaway certificate authority and a server certificate it signed (for 127.0.0.1 and
// localhost), made with the `openssl` command in a temp dir: the TLS tests (rediss://) need a
// server whose certificate verifies against a CA that only the test trusts.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCertificates {
  readonly dir: string;
  /** The CA's certificate (PEM): what clients trust. */
  readonly caFile: string;
  /** The server's certificate and key (PEM), signed by the CA. */
  readonly certFile: string;
  readonly keyFile: string;
  /** Deletes the directory. */
  remove(): void;
}

function openssl(args: readonly string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.error) throw new Error(`openssl is not installed: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed:\n${r.stderr}`);
}

export function makeTestCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), 'kmoe-tls-'));
  const p = (name: string) => join(dir, name);
  try {
    openssl(
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=kmoe test CA',
        '-keyout',
        p('ca.key'),
        '-out',
        p('ca.crt'),
      ],
      dir,
    );
    openssl(
      [
        'req',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-subj',
        '/CN=127.0.0.1',
        '-keyout',
        p('server.key'),
        '-out',
        p('server.csr'),
      ],
      dir,
    );
    writeFileSync(p('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    openssl(
      [
        'x509',
        '-req',
        '-in',
        p('server.csr'),
        '-CA',
        p('ca.crt'),
        '-CAkey',
        p('ca.key'),
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        p('server.ext'),
        '-out',
        p('server.crt'),
      ],
      dir,
    );
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir,
    caFile: p('ca.crt'),
    certFile: p('server.crt'),
    keyFile: p('server.key'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
