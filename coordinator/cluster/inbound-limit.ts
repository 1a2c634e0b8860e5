// How many bytes a worker may send the coordinator in one frame, counted on the socket. ws buffers a
// whole frame (up to its maxPayload, fixed when the socket opens) before the coordinator sees it, so
// a frame's size must be checked while it arrives: a worker, or whatever answers at its URL before
// any handshake, could otherwise make the coordinator buffer gigabytes for one reply.

import type { Socket } from 'node:net';
import { FRAME_PREFIX_BYTES, MAX_HEADER_BYTES } from '../../shared/protocol/frame.js';

/** A WebSocket frame header from a server (unmasked, 64-bit length) is at most this long. */
const WS_HEADER_BYTES = 14;

/**
 * The largest frame that carries no tensor: every handshake message, drain, holdings and error
 * reply (a header above MAX_HEADER_BYTES is refused by the decoder anyway).
 */
export const CONTROL_FRAME_BYTES = FRAME_PREFIX_BYTES + MAX_HEADER_BYTES + 8 + WS_HEADER_BYTES;

/** Bytes of the header of an unmasked WebSocket frame (server to client) with this payload. */
function wsHeaderBytes(payload: number): number {
  return payload < 126 ? 2 : payload < 65536 ? 4 : 10;
}

/**
 * Counts the bytes read from one socket against the bytes of the messages ws made of them: the
 * difference is the frame still arriving. A result is never larger than the request it answers (the
 * same [n, hidden] section in the same dtype, a smaller header), so a frame may be as large as a
 * control message or the largest request sent on this socket, no larger; one that grows beyond is
 * cut off within one socket read instead of being buffered whole.
 */
export class InboundLimit {
  private received = 0;
  private consumed = 0;
  private limit = CONTROL_FRAME_BYTES;
  private socket: Socket | undefined;
  private exceeded = false;
  private readonly onData = (chunk: Buffer): void => {
    // ws read this chunk first (its listener came first) and reported its complete messages.
    this.received += chunk.byteLength;
    const arriving = this.received - this.consumed;
    if (arriving > this.limit && !this.exceeded) {
      this.exceeded = true;
      this.stop();
      this.onExceeded(arriving, this.limit);
    }
  };

  constructor(private onExceeded: (bytes: number, limit: number) => void) {}

  /**
   * Starts counting on the WebSocket's socket: call from ws' 'open' event, after ws added its own
   * reader (a reader added before would take bytes ws has not seen yet, as at the upgrade).
   */
  watch(socket: Socket): void {
    this.socket = socket;
    socket.on('data', this.onData);
  }

  /** Who hears of a frame beyond the limit from now on (the handshake, then the connection). */
  onExceed(handler: (bytes: number, limit: number) => void): void {
    this.onExceeded = handler;
  }

  /** ws read a whole message, ping or pong of `payload` bytes (one frame: ws servers do not split). */
  message(payload: number): void {
    this.consumed += payload + wsHeaderBytes(payload);
  }

  /** A request of `frameBytes` was sent: its reply, and so the next frames, may be that large. */
  expect(frameBytes: number): void {
    this.limit = Math.max(this.limit, frameBytes + WS_HEADER_BYTES);
  }

  stop(): void {
    this.socket?.off('data', this.onData);
  }
}
