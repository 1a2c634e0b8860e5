// Loopback TCP listeners that stand in for the worker URLs a coordinator dials: silent peers (accept
// TCP, never answer: what stale or hostile registry records point at) and relays to a real worker.
// One instance per test file keeps every server and socket, so that a test can drop connections
// (a blip) and afterAll can end them all.

import { createServer, type Server, Socket } from 'node:net';

export class LoopbackListeners {
  readonly servers: Server[] = [];
  /** Every socket accepted or dialled so far, less those a test has spliced out to drop. */
  readonly sockets: Socket[] = [];

  /** Listens on 127.0.0.1:`port` (0: any free port), handing each accepted socket to `onConnection`. */
  listen(port: number, onConnection: (socket: Socket) => void): Promise<Server> {
    const s = createServer((sock) => {
      this.sockets.push(sock);
      sock.on('error', () => {});
      onConnection(sock);
    });
    this.servers.push(s);
    return new Promise((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve(s));
    });
  }

  /**
   * Accepts TCP and never answers. It reads and drops what it is sent, so that a connection the
   * coordinator closes ends here too rather than staying half-closed until afterAll.
   */
  silent(port: number, onConnection: (socket: Socket) => void = () => {}): Promise<Server> {
    return this.listen(port, (s) => {
      s.resume();
      onConnection(s);
    });
  }

  /** A connection to 127.0.0.1:`port` (a relay's upstream), kept with the rest. */
  dial(port: number): Socket {
    const u = new Socket();
    u.connect(port, '127.0.0.1');
    this.sockets.push(u);
    return u;
  }

  /** Forwards each connection to 127.0.0.1:`to`. */
  forward(port: number, to: number): Promise<Server> {
    return this.listen(port, (c) => {
      const u = this.dial(to);
      c.pipe(u).pipe(c);
      u.on('error', () => c.destroy());
      c.on('close', () => u.destroy());
    });
  }

  /**
   * Stops `servers` listening and ends the connections `drops` picks (every one by default, of
   * every listener: a blip); resolves once `servers` have no connections left.
   */
  async closeAndDrop(servers: readonly Server[], drops: (s: Socket) => boolean = () => true): Promise<void> {
    const closed = servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const s of this.sockets.splice(0))
      if (drops(s)) s.destroy();
      else this.sockets.push(s);
    await Promise.all(closed);
  }

  /** Ends every socket, then closes every server. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))));
  }
}
