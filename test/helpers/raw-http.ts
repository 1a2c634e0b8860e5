// Raw HTTP/1.1 over node:net, for requests no well-behaved client would send (bad request lines,
// broken chunked bodies, oversized headers, uploads cut short): writes bytes as given and reads
// back whatever the server answers until it closes the connection or goes quiet.

import net from 'node:net';

export interface RawResponse {
  /** 0 when the server answered nothing. */
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** The JSON body, or undefined if it is not JSON. */
  readonly json: unknown;
}

export interface RawRequestOptions {
  /** Writes the parts with this many ms between them (a slow upload). */
  readonly gapMs?: number;
  /** Destroys the socket after writing, without waiting for an answer (an aborted upload). */
  readonly abort?: boolean;
  /** Gives up waiting for the answer after this long (the answer so far is returned). */
  readonly timeoutMs?: number;
  /**
   * Half-closes the connection after writing: a request that is incomplete as written then ends
   * at once (the server sees the end of its input) instead of waiting for the server's timeout.
   */
  readonly endAfterWrite?: boolean;
}

/** Sends `parts` on a fresh connection and returns the first response read back. */
export function rawRequest(
  url: string,
  parts: readonly (string | Uint8Array)[],
  options: RawRequestOptions = {},
): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parseResponse(Buffer.concat(chunks)));
    };
    const timer = setTimeout(finish, options.timeoutMs ?? 10_000);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      if (complete(Buffer.concat(chunks))) finish();
    });
    socket.on('close', finish);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A reset after the server answered and closed is how a refused request may end.
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') finish();
      else if (!done) {
        done = true;
        clearTimeout(timer);
        reject(err);
      }
    });
    socket.on('connect', async () => {
      for (const part of parts) {
        if (socket.destroyed) return;
        socket.write(part);
        if (options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs));
      }
      if (options.abort) finish();
      else if (options.endAfterWrite && !socket.destroyed) socket.end();
    });
  });
}

/** A whole response with a content-length body has arrived. */
function complete(bytes: Buffer): boolean {
  const end = bytes.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const m = /\r\ncontent-length: *(\d+)/i.exec(bytes.subarray(0, end).toString('latin1'));
  return m !== null && bytes.length >= end + 4 + Number(m[1]);
}

/**
 * The response to the first request on the connection: its body is `content-length` bytes, or
 * without one everything after its head (a 100 Continue's "body" is then the final response).
 * Responses pipelined after a content-length body are ignored.
 */
export function parseResponse(bytes: Buffer): RawResponse {
  const end = bytes.indexOf('\r\n\r\n');
  if (end === -1) return { status: 0, headers: {}, body: '', json: undefined };
  const { status, headers } = parseHead(bytes.subarray(0, end));
  const length = headers['content-length'];
  const body = bytes.subarray(end + 4, /^\d+$/.test(length ?? '') ? end + 4 + Number(length) : undefined);
  return withBody(status, headers, body.toString('utf8'));
}

/**
 * Every response on the wire, in the order written: bodies framed by `content-length` or chunked
 * encoding (decoded), else running to the end of the bytes. @throws if a framed body is cut short
 * or a response's head is incomplete, so a test sees a truncated answer as such.
 */
export function parseResponses(bytes: Buffer): RawResponse[] {
  const responses: RawResponse[] = [];
  let at = 0;
  while (at < bytes.length) {
    const end = bytes.indexOf('\r\n\r\n', at);
    if (end === -1) throw new Error(`response ${responses.length + 1} is cut short in its head`);
    const { status, headers } = parseHead(bytes.subarray(at, end));
    at = end + 4;
    let body: Buffer;
    if ((status >= 100 && status < 200) || status === 204 || status === 304) {
      body = Buffer.alloc(0);
    } else if (headers['content-length'] !== undefined) {
      const length = Number(headers['content-length']);
      if (bytes.length < at + length) throw new Error(`response ${responses.length + 1} is cut short`);
      body = bytes.subarray(at, at + length);
      at += length;
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      ({ body, at } = dechunk(bytes, at, responses.length + 1));
    } else {
      body = bytes.subarray(at);
      at = bytes.length;
    }
    responses.push(withBody(status, headers, body.toString('utf8')));
  }
  return responses;
}

/** A chunked body from `at`: its data, and where the bytes after its last chunk and trailers begin. */
function dechunk(bytes: Buffer, at: number, which: number): { body: Buffer; at: number } {
  const parts: Buffer[] = [];
  for (;;) {
    const eol = bytes.indexOf('\r\n', at);
    if (eol === -1) throw new Error(`response ${which} is cut short in a chunk size`);
    const size = Number.parseInt(bytes.subarray(at, eol).toString('latin1').split(';')[0]!, 16);
    at = eol + 2;
    if (size === 0) break;
    if (bytes.length < at + size + 2) throw new Error(`response ${which} is cut short in a chunk`);
    parts.push(bytes.subarray(at, at + size));
    at += size + 2;
  }
  // Trailers, if any, then an empty line.
  for (;;) {
    const eol = bytes.indexOf('\r\n', at);
    if (eol === -1) throw new Error(`response ${which} is cut short after its last chunk`);
    if (eol === at) return { body: Buffer.concat(parts), at: eol + 2 };
    at = eol + 2;
  }
}

function parseHead(head: Buffer): { status: number; headers: Record<string, string> } {
  const [statusLine, ...lines] = head.toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0), headers };
}

function withBody(status: number, headers: Record<string, string>, body: string): RawResponse {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { status, headers, body, json };
}
