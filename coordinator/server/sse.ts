// Server-sent events for streamed completions: `data: <json>` events, an error event when a
// stream cannot finish, and the `data: [DONE]` terminator OpenAI clients wait for.

import type { ServerResponse } from 'node:http';
import type { ApiError } from './errors.js';

export class SseWriter {
  constructor(private readonly res: ServerResponse) {}

  /** Sends the headers now, so the client sees the stream start before the first token. */
  open(): void {
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      // Proxies such as nginx would otherwise buffer the stream.
      'x-accel-buffering': 'no',
    });
    this.res.flushHeaders();
  }

  /**
   * Writes one event. The scheduler cannot wait for one slow reader without stalling every
   * other sequence, so events queue in the socket buffer; a sequence's output is bounded by its
   * max_tokens, which bounds that buffer too.
   */
  send(data: object): void {
    if (this.closed) return;
    this.res.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** An error after the stream started: OpenAI clients raise it as an APIError. */
  fail(error: ApiError): void {
    this.send(error.body());
    this.end();
  }

  end(): void {
    if (this.closed) return;
    this.res.end('data: [DONE]\n\n');
  }

  get closed(): boolean {
    return this.res.writableEnded || this.res.destroyed;
  }
}
