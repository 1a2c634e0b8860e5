// Writing responses through fastify: JSON and text bodies, and OpenAI-style error bodies with the
// headers their errors call for (ApiError.headers).

import type { FastifyReply } from 'fastify';
import type { ApiError } from './errors.js';

export function sendJson(res: FastifyReply, status: number, body: unknown): void {
  void res.code(status).type('application/json; charset=utf-8').send(JSON.stringify(body));
}

export function sendText(res: FastifyReply, status: number, contentType: string, text: string): void {
  void res.code(status).type(contentType).send(text);
}

export function sendError(res: FastifyReply, error: ApiError): void {
  void res.headers(error.headers());
  sendJson(res, error.status, error.body());
}
