// Worker URLs that accept TCP and never answer (what stale or hostile registry records point at),
// against the remote expert backend, with real worker processes and real listeners: once their
// first join has failed they are retried in the background, and those retries hold at most 4
// sockets at once however many such URLs there are (each used to hold its own: 40 records, 40
// sockets); a real worker's join meanwhile gets a place of its own at once, without waiting for
// any of them to time out.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BACKGROUND_HANDSHAKES } from '../../../coordinator/cluster/handshake-places.js';
import { RemoteExpertBackend } from '../../../coordinator/cluster/remote-expert-backend.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import { LoopbackListeners } from '../../helpers/loopback-listeners.js';
import { MODEL_DIR } from '../../helpers/paths.js';
import { restartablePort } from '../../helpers/ports.js';
import { startWorker, type WorkerProcess } from '../../helpers/worker-process.js';

const MODEL = { numLayers: 4, numExperts: 8, hidden: 256, nativeK: 2 };
/** Three times the background places: the excess must wait, not dial. */
const SILENT = 12;
/** Far longer than the test: no silent handshake ends while it runs. */
const HANDSHAKE_TIMEOUT_MS = 120_000;

let a: WorkerProcess;
let b: WorkerProcess;
let fingerprint: string;
const listeners = new LoopbackListeners();
/** Sockets of the silent listeners: open now, the most open at once, and those that ended. */
const count = { open: 0, max: 0, ended: 0 };

/** Listens on `port`, accepting connections, counting them and never sending a byte. */
const silentListener = (port: number) =>
  listeners.silent(port, (sock) => {
    count.open++;
    count.max = Math.max(count.max, count.open);
    sock.once('close', () => {
      count.open--;
      count.ended++;
    });
  });

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (${JSON.stringify(count)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  const ckpt = await Checkpoint.open(MODEL_DIR);
  fingerprint = ckpt.fingerprint();
  await ckpt.close();
  [a, b] = await Promise.all([startWorker('0-7'), startWorker('0-7')]);
});

afterAll(async () => {
  // Ending the silent sockets ends the handshakes still waiting on them.
  await listeners.close();
  await Promise.all([a?.stop(), b?.stop()]);
});

describe('background retries of worker URLs whose first join failed', () => {
  it('hold at most 4 sockets at once, and a real worker joins without waiting for any of them', async () => {
    const be = await RemoteExpertBackend.connect(
      { workers: [a.url], wire: 'fp32', handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS },
      { fingerprint, ...MODEL },
    );
    try {
      const ports: number[] = [];
      for (let i = 0; i < SILENT; i++) ports.push(await restartablePort(ports));
      // Nothing listens yet: every first join fails at once (connection refused), and each URL is
      // then retried in the background with backoff, as after a first join that timed out.
      const joins = await Promise.allSettled(ports.map((p) => be.join(`ws://127.0.0.1:${p}`)));
      expect(joins.map((j) => j.status)).toEqual(Array(SILENT).fill('rejected'));
      // Now the ports accept TCP and never answer: a retry holds its socket for the handshake bound.
      for (const p of ports) await silentListener(p);
      await until('the background places to fill', () => count.open >= MAX_BACKGROUND_HANDSHAKES);
      // Every URL's next retry comes due within the longest backoff (5 s): give them all that time.
      await new Promise((r) => setTimeout(r, 7000));
      expect(count).toEqual({ open: 4, max: 4, ended: 0 });
      // A real worker's join is not queued behind the retries: it completes while all four still
      // hang (none can end before the 120 s bound).
      expect(await be.join(b.url)).toEqual({ url: b.url, experts: [0, 1, 2, 3, 4, 5, 6, 7] });
      expect(count).toEqual({ open: 4, max: 4, ended: 0 });
    } finally {
      await be.close();
    }
  });
});
