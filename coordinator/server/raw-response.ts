// Answers given outside fastify: Node's HTTP parser failures (no request object exists for them)
// and CONNECT, whose socket Node hands over, written straight to the socket, and the 417 Node asks
// for before routing. Each is a complete HTTP/1.1 response with an OpenAI-style JSON error, after
// which the connection closes; api-server.ts writes it once the answers due before it are written.

import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { type ApiError, MalformedHttpError } from './errors.js';

/**
 * The OpenAI-style error for a Node HTTP parser failure, by the parser's error code. `timeout`:
 * the limit that ran out if it is a timeout (Node reports the headers' and the request's alike).
 */
export function parserError(
  err: Error & { code?: string },
  timeout: { readonly what: string; readonly ms: number },
): ApiError {
  const code = err.code ?? '';
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return new MalformedHttpError(
      408,
      'request_timeout',
      `the ${timeout.what} did not arrive within ${timeout.ms / 1000} s`,
    );
  }
  if (code === 'HPE_HEADER_OVERFLOW') {
    return new MalformedHttpError(431, 'headers_too_large', 'the request headers are too large');
  }
  // Node's own answer to it is a 413 too: the chunked framing is valid, its metadata over the limit.
  if (code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW') {
    return new MalformedHttpError(
      413,
      'chunk_extensions_too_large',
      "a chunk's extensions in the request body are over 16 KiB",
    );
  }
  if (code.includes('CHUNK')) {
    return new MalformedHttpError(400, 'bad_chunked_encoding', 'the chunked request body is malformed');
  }
  if (/METHOD|URL|VERSION|CONSTANT|H2_UPGRADE|LF_EXPECTED|CR_EXPECTED/.test(code)) {
    return new MalformedHttpError(400, 'bad_request_line', 'the request line is malformed');
  }
  if (/HEADER|CONTENT_LENGTH|TRANSFER_ENCODING/.test(code)) {
    return new MalformedHttpError(400, 'bad_header', 'a request header is malformed');
  }
  return new MalformedHttpError(400, 'bad_request', 'the request is not valid HTTP/1.1');
}

export interface ErrorAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/**
 * The answer to `error` outside fastify, with the headers every such answer carries.
 * `requestId`: the `x-request-id` every answer carries, also when no request could be parsed.
 */
export function errorAnswer(error: ApiError, requestId: string): ErrorAnswer {
  const body = JSON.stringify(error.body());
  const headers = {
    ...error.headers(),
    'x-request-id': requestId,
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    connection: 'close',
  };
  return { status: error.status, headers, body };
}

/**
 * A complete response (errorAnswer) written straight to the socket, which is then closed
 * (endConnection).
 */
export function writeRaw(socket: Socket, error: ApiError, requestId: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const { status, headers, body } = errorAnswer(error, requestId);
  socket.write(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
      Object.entries(headers)
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join('') +
      `\r\n${body}`,
  );
  endConnection(socket);
}

/**
 * Ends the connection after what is written to it (Node's documented way), reading on to the
 * client's FIN, which closes it at once: a FIN, not a reset (closing with bytes unread would send
 * one), so the answers already written arrive even if the client is still sending.
 */
export function endConnection(socket: Socket): void {
  socket.end();
  socket.resume();
  // A peer that never reads its answer must not hold the socket open.
  setTimeout(() => socket.destroy(), 5000).unref();
}
