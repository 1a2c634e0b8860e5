// A bare `ws` echo between two node processes on loopback (1,200-byte messages, the size of a
// demo-model request), with either side keeping its event loop turning (a setImmediate loop, so
// its thread never sleeps in epoll_wait) or sleeping as kmoe's processes do. The caller busy-waits
// GAP_US between messages, as a coordinator computes between MoE layers. Not part of kmoe; run
// from the repository: node docs/bench-native/ws-echo.mjs   (GAP_US=300 MESSAGES=3000)
import { fork } from 'node:child_process';
import { WebSocket, WebSocketServer } from 'ws';

const GAP_US = Number(process.env.GAP_US ?? 300);
const MESSAGES = Number(process.env.MESSAGES ?? 3000);

/** Keeps the event loop polling without sleeping until the returned function is called. */
function spin() {
  let stopped = false;
  const turn = () => {
    if (!stopped) setImmediate(turn);
  };
  turn();
  return () => {
    stopped = true;
  };
}

if (process.argv[2] === 'echo') {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  server.on('listening', () => process.send(server.address().port));
  if (process.argv[3] === 'spin') spin();
  server.on('connection', (socket) => socket.on('message', (m) => socket.send(m)));
} else {
  for (const [echoSpins, callerSpins] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ]) {
    const child = fork(new URL(import.meta.url).pathname, ['echo', echoSpins ? 'spin' : 'sleep']);
    const port = await new Promise((resolve) => child.once('message', resolve));
    const socket = new WebSocket(`ws://127.0.0.1:${port}`);
    await new Promise((resolve) => socket.once('open', resolve));
    const message = Buffer.alloc(1200);
    const micros = [];
    for (let i = 0; i < MESSAGES; i++) {
      const end = process.hrtime.bigint() + BigInt(GAP_US * 1000);
      while (process.hrtime.bigint() < end);
      const sent = process.hrtime.bigint();
      socket.send(message);
      const stop = callerSpins ? spin() : () => {};
      await new Promise((resolve) => socket.once('message', resolve));
      stop();
      micros.push(Number(process.hrtime.bigint() - sent) / 1000);
    }
    micros.sort((a, b) => a - b);
    const at = (q) => micros[Math.floor(q * micros.length)].toFixed(0);
    console.log(
      `echo side ${echoSpins ? 'spins ' : 'sleeps'}, caller ${callerSpins ? 'spins ' : 'sleeps'}: round trip p50 ${at(0.5)} us, p90 ${at(0.9)} us`,
    );
    socket.close();
    child.kill();
  }
}
