// A relay between a coordinator and a real worker, on loopback sockets, that models a broken or
// compromised worker: the coordinator's frames (the cluster-token handshake included; a worker
// registered with a token would refuse the relay's URL, a worker of a fixed list does not) reach the
// worker unchanged, and each frame the worker sends back passes through `tamper`, which may send
// it on, change it, drop it, or write raw bytes to the coordinator's socket.

import type { Socket } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { type DecodeLimits, decodeMessage } from '../../shared/protocol/codec.js';
import { frameBytes } from '../../shared/protocol/frame.js';
import type { Message } from '../../shared/protocol/messages.js';

export interface RelayReply {
  /** The worker's frame as it arrived (tamper may change it in place). */
  readonly bytes: Uint8Array;
  /** The frame decoded (views into `bytes`), or undefined if it does not decode. */
  readonly msg: Message | undefined;
  /** Sends a binary message to the coordinator. */
  send(bytes: Uint8Array): void;
  /** The coordinator's TCP socket, to write raw WebSocket bytes on. */
  readonly socket: Socket;
}

export interface TamperingRelay {
  readonly url: string;
  close(): Promise<void>;
}

export async function startTamperingRelay(
  upstream: string,
  limits: DecodeLimits,
  tamper: (reply: RelayReply) => void,
  /** Sees each of the coordinator's frames (decoded, or undefined) as it passes on unchanged. */
  observe?: (msg: Message | undefined) => void,
): Promise<TamperingRelay> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const sockets = new Set<WebSocket>();
  wss.on('connection', (down, req) => {
    const socket = req.socket as Socket;
    const up = new WebSocket(upstream, { perMessageDeflate: false });
    sockets.add(down).add(up);
    const early: Buffer[] = [];
    up.on('open', () => {
      for (const m of early.splice(0)) up.send(m);
    });
    down.on('message', (data) => {
      const bytes = frameBytes(data as Buffer);
      if (observe) observe(decodeOrUndefined(bytes, limits));
      if (up.readyState === WebSocket.OPEN) up.send(bytes);
      else early.push(Buffer.from(bytes));
    });
    up.on('message', (data) => {
      const bytes = frameBytes(data as Buffer);
      tamper({ bytes, msg: decodeOrUndefined(bytes, limits), send: (b) => down.send(b), socket });
    });
    for (const ws of [down, up]) ws.on('error', () => {});
    down.on('close', () => up.terminate());
    up.on('close', () => down.terminate());
  });
  const { port } = wss.address() as { port: number };
  return {
    url: `ws://127.0.0.1:${port}`,
    close: async () => {
      for (const ws of sockets) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

/** The bytes of an unmasked binary WebSocket frame header announcing `length` payload bytes. */
export function wsFrameHeader(length: number): Buffer {
  if (length < 126) return Buffer.from([0x82, length]);
  if (length < 65536) {
    const h = Buffer.alloc(4);
    h[0] = 0x82;
    h[1] = 126;
    h.writeUInt16BE(length, 2);
    return h;
  }
  const h = Buffer.alloc(10);
  h[0] = 0x82;
  h[1] = 127;
  h.writeBigUInt64BE(BigInt(length), 2);
  return h;
}

function decodeOrUndefined(bytes: Uint8Array, limits: DecodeLimits): Message | undefined {
  try {
    return decodeMessage(bytes, limits);
  } catch {
    return undefined;
  }
}
