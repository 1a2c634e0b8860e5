// Ports for processes a test stops and restarts at the same address. A port that bind(0) handed
// out can be taken by another test file's bind(0) or by an outgoing connection's source port while
// its process is down (test files run two at a time); ports below the kernel's ephemeral range are
// never handed out that way, so only an explicit bind (another call of this, 1 in ~10,000) can
// take one.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Lowest ephemeral port (Linux's ip_local_port_range; the usual default elsewhere). */
function ephemeralFloor(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const n = Number(low);
    if (Number.isInteger(n) && n > 11_024) return n;
  } catch {
    // Not Linux: assume the IANA range.
  }
  return 49_152;
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * A loopback port free right now, below the ephemeral range, safe to release and bind again;
 * never one of `avoid` (ports this test already picked but has not bound yet).
 */
export async function restartablePort(avoid: readonly number[] = []): Promise<number> {
  const top = ephemeralFloor() - 1;
  const span = 10_000;
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = top - Math.floor(Math.random() * span);
    if (!avoid.includes(port) && (await bindable(port))) return port;
  }
  throw new Error(`no free loopback port in ${top - span + 1}-${top} after 100 tries`);
}
