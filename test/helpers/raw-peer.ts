// A bare WebSocket peer that speaks kmoe frames by hand, to poke a worker with whatever bytes a
// test needs (wrong versions, malformed frames) and read back each decoded reply.

import WebSocket from 'ws';
import { type DecodeLimits, decodeMessage } from '../../shared/protocol/codec.js';
import { frameBytes } from '../../shared/protocol/frame.js';
import type { Message } from '../../shared/protocol/messages.js';

export class RawPeer {
  private readonly inbox: Message[] = [];
  private waiting: ((m: Message) => void) | undefined;
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(
    readonly ws: WebSocket,
    limits: DecodeLimits,
  ) {
    ws.on('message', (data) => {
      const msg = decodeMessage(frameBytes(data as Buffer), limits);
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w(msg);
      } else this.inbox.push(msg);
    });
    this.closed = new Promise((resolve) =>
      ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
  }

  static open(url: string, limits: DecodeLimits): Promise<RawPeer> {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new RawPeer(ws, limits)));
      ws.once('error', reject);
    });
  }

  send(bytes: Uint8Array | string): void {
    this.ws.send(bytes);
  }

  next(timeoutMs = 10_000): Promise<Message> {
    const queued = this.inbox.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no message from the worker')), timeoutMs);
      this.waiting = (m) => {
        clearTimeout(timer);
        resolve(m);
      };
    });
  }

  close(): void {
    this.ws.close();
  }
}
