// A bare `ws` model of one MoE layer through 2 workers, to set kmoe's round trip beside what the
// machine gives without kmoe: the caller busy-waits GAP_US (the coordinator's dense work), sends a
// 1,200-byte message to each of WORKERS (default 2) echo processes, which busy-wait SERVICE_US (the experts) and
// answer; the caller waits for all. Prints the layer round trip (mean, p50, p90) and the time the
// two send calls take. The echo processes run under SCHED_BATCH as kmoe's local workers do
// (ECHO_SCHED=normal to leave them). Not part of kmoe; run from the repository:
//   SERVICE_US=300 GAP_US=1000 WORKERS=2 node docs/bench-native/ws-fanout.mjs   (LAYERS=3000)
import { execFileSync, fork } from 'node:child_process';
import { WebSocket, WebSocketServer } from 'ws';
const GAP_US = Number(process.env.GAP_US ?? 1000);
const SERVICE_US = Number(process.env.SERVICE_US ?? 300);
const LAYERS = Number(process.env.LAYERS ?? 3000);
const WORKERS = Number(process.env.WORKERS ?? 2);
const busy = (us) => { const end = performance.now() + us / 1000; while (performance.now() < end); };
if (process.argv[2] === 'echo') {
  if ((process.env.ECHO_SCHED ?? 'batch') === 'batch') {
    try {
      execFileSync('chrt', ['--all-tasks', '--batch', '--pid', '0', String(process.pid)]);
    } catch (err) {
      console.error(`echo: chrt failed (${err.message}); run with ECHO_SCHED=normal`);
      process.exit(1);
    }
  }
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
  server.on('listening', () => process.send(server.address().port));
  server.on('connection', (s) => s.on('message', (m) => { busy(SERVICE_US); s.send(m); }));
} else {
  const kids = Array.from({ length: WORKERS }, () => fork(new URL(import.meta.url).pathname, ['echo']));
  const ports = await Promise.all(
    kids.map((k) => new Promise((r, no) => { k.once('message', r); k.once('exit', () => no(new Error('an echo process exited'))); })),
  );
  const socks = await Promise.all(ports.map((p) => new Promise((r) => { const w = new WebSocket(`ws://127.0.0.1:${p}`, { perMessageDeflate: false }); w.on('open', () => r(w)); })));
  const msg = Buffer.alloc(1200);
  const rts = [];
  let sendUs = 0;
  for (let i = 0; i < LAYERS; i++) {
    busy(GAP_US);
    const t0 = performance.now();
    const ps = socks.map((s) => new Promise((r) => s.once('message', r)));
    const ts = performance.now();
    for (const s of socks) s.send(msg);
    sendUs += (performance.now() - ts) * 1000;
    await Promise.all(ps);
    rts.push((performance.now() - t0) * 1000);
  }
  rts.sort((a, b) => a - b);
  const mean = rts.reduce((a, b) => a + b, 0) / rts.length;
  console.log(`${WORKERS} echo processes, gap ${GAP_US} us, service ${SERVICE_US} us: layer round trip mean ${mean.toFixed(0)} us, p50 ${rts[rts.length >> 1].toFixed(0)}, p90 ${rts[Math.floor(rts.length * 0.9)].toFixed(0)}; sends ${(sendUs / LAYERS).toFixed(0)} us (mean)`);
  for (const s of socks) s.close();
  for (const k of kids) k.kill();
}
