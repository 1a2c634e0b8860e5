// Checks that a server will be able to listen before the slow part of its startup (loading a
// model takes seconds): a taken port or a foreign address fails in milliseconds instead.

import { createServer } from 'node:net';
import { ListenError } from './errors.js';

/**
 * Binds host:port and releases it at once; @throws ListenError when that fails. Port 0 (any free
 * port) always succeeds and is not checked. Another process may still take the port in between:
 * the server's own listen reports that case with the same error.
 */
export async function checkCanListen(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new ListenError(host, port, err)));
    server.listen({ host, port, exclusive: true }, () => resolve());
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/**
 * Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost). An
 * unspecified address (0.0.0.0, ::) or any interface address is reachable from elsewhere.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
