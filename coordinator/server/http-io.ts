// Writing responses through fastify: JSON and text bodies, and OpenAI-style error bodies with the
// headers their statuses call for (retry-after on 429/503, connection: close after a 413 whose body
// was left unread, allow on a 405).

import type { FastifyReply } from 'fastify';
import { type ApiError, RouteNotFoundError } from './errors.js';

export function sendJson(res: FastifyReply, status: number, body: unknown): void {
  void res.code(status).type('application/json; charset=utf-8').send(JSON.stringify(body));
}

export function sendText(res: FastifyReply, status: number, contentType: string, text: string): void {
  void res.code(status).type(contentType).send(text);
}

export function sendError(res: FastifyReply, error: ApiError): void {
  if (error.status === 429 || error.status === 503) void res.header('retry-after', '1');
  if (error.status === 413) void res.header('connection', 'close');
  if (error.status === 401) void res.header('www-authenticate', 'Bearer');
  // RFC 9110: a 405 names the methods the resource does take.
  if (error instanceof RouteNotFoundError && error.allowed.length > 0)
    void res.header('allow', error.allowed.join(', '));
  sendJson(res, error.status, error.body());
}
