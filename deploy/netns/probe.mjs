// Network probes for kmoe-netns.sh, on Node built-ins only (no ping/iperf on most hosts):
//   echo --port P                 TCP echo server (for rtt)
//   rtt --host H --port P [--count N]   round trips of 1-byte messages, TCP_NODELAY; prints JSON ms
//   sink --port P                 receives one transfer, discards it, prints JSON bytes/s, exits
//   send --host H --port P --bytes N    sends N bytes as fast as TCP allows; prints JSON bytes/s
//   wait --host H --port P [--timeout S] exits 0 once H:P accepts a connection, 1 after S seconds
// Clients retry connecting for up to 10 s (wait: --timeout) so servers started a moment earlier are found.

import net from 'node:net';
import { parseArgs } from 'node:util';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    host: { type: 'string' },
    port: { type: 'string' },
    count: { type: 'string', default: '20' },
    bytes: { type: 'string' },
    timeout: { type: 'string', default: '10' },
  },
});
const mode = positionals[0];
const port = Number(values.port);
if (!Number.isInteger(port) || port < 1 || port > 65535) fail('--port P is required (1..65535)');

function fail(message) {
  process.stderr.write(`probe: ${message}\n`);
  process.exit(2);
}

async function connect(host, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise((resolve, reject) => {
        const s = net.connect({ host, port, noDelay: true }, () => resolve(s));
        s.once('error', reject);
      });
    } catch (err) {
      if (Date.now() > deadline) fail(`cannot connect to ${host}:${port}: ${err.message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

if (mode === 'echo') {
  net
    .createServer({ noDelay: true }, (s) => {
      s.on('data', (d) => s.write(d));
      s.on('error', () => s.destroy());
    })
    .listen(port);
} else if (mode === 'rtt') {
  const count = Number(values.count);
  const s = await connect(values.host);
  const samples = [];
  const one = Buffer.from([1]);
  // One warm-up round trip, then `count` timed ones.
  for (let i = 0; i <= count; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise((resolve) => {
      s.once('data', resolve);
      s.write(one);
    });
    if (i > 0) samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  s.destroy();
  samples.sort((a, b) => a - b);
  const r = (x) => Math.round(x * 1000) / 1000;
  process.stdout.write(
    `${JSON.stringify({ method: 'tcp', samples: count, min_ms: r(samples[0]), median_ms: r(quantile(samples, 0.5)), p90_ms: r(quantile(samples, 0.9)), max_ms: r(samples.at(-1)) })}\n`,
  );
} else if (mode === 'sink') {
  const server = net.createServer((s) => {
    let bytes = 0;
    let t0;
    s.on('data', (d) => {
      t0 ??= process.hrtime.bigint();
      bytes += d.length;
    });
    s.on('end', () => {
      // A connection that sent nothing is a readiness check (wait mode), not the transfer.
      if (bytes === 0) {
        s.end();
        return;
      }
      const seconds = Number(process.hrtime.bigint() - (t0 ?? process.hrtime.bigint())) / 1e9;
      process.stdout.write(
        `${JSON.stringify({ role: 'sink', bytes, seconds, mbit_per_s: (bytes * 8) / seconds / 1e6 })}\n`,
      );
      s.end();
      server.close();
    });
  });
  server.listen(port);
} else if (mode === 'send') {
  const total = Number(values.bytes);
  if (!Number.isInteger(total) || total < 1) fail('--bytes N is required');
  const s = await connect(values.host);
  const chunk = Buffer.alloc(64 * 1024, 7);
  const t0 = process.hrtime.bigint();
  let sent = 0;
  while (sent < total) {
    const n = Math.min(chunk.length, total - sent);
    sent += n;
    if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n)))
      await new Promise((r) => s.once('drain', r));
  }
  // The sender's rate counts until the peer has everything: wait for its close after our end.
  s.end();
  await new Promise((r) => s.once('close', r));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(
    `${JSON.stringify({ role: 'send', bytes: total, seconds, mbit_per_s: (total * 8) / seconds / 1e6 })}\n`,
  );
} else if (mode === 'wait') {
  const seconds = Number(values.timeout);
  if (!(seconds > 0)) fail('--timeout must be a number of seconds > 0');
  const s = await connect(values.host, seconds * 1000).catch(() => undefined);
  if (s === undefined) process.exit(1);
  s.destroy();
} else {
  fail(`unknown mode '${mode ?? ''}' (echo | rtt | sink | send | wait)`);
}
