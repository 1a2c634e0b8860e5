// Reading request bodies and writing JSON responses over node:http, with the limits and error
// bodies of the API: an oversized body is a 413, bad JSON a 400, never an exception.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { type ApiError, InvalidRequestError, PayloadTooLargeError } from './errors.js';

/** Reads the whole body (at most `limitBytes`) and parses it as JSON. */
export async function readJsonBody(req: IncomingMessage, limitBytes: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limitBytes) throw new PayloadTooLargeError(limitBytes);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limitBytes) throw new PayloadTooLargeError(limitBytes);
    chunks.push(buf);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') {
    throw new InvalidRequestError('the request body is empty; send a JSON object', { code: 'invalid_json' });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidRequestError(
      `the request body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
      { code: 'invalid_json' },
    );
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

export function sendText(res: ServerResponse, status: number, contentType: string, text: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, error: ApiError): void {
  if (error.status === 429 || error.status === 503) res.setHeader('retry-after', '1');
  // A 413 leaves the rest of the body unread: close the connection rather than parse it as a request.
  if (error.status === 413) res.setHeader('connection', 'close');
  sendJson(res, error.status, error.body());
}
