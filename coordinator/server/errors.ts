// Errors the HTTP API answers with. Each carries its status and the OpenAI error fields, so a
// handler throws and the API server turns it into `{error: {message, type, param, code}}` with a
// stable, never-null `code`; anything else that reaches it is a bug and becomes a 500 that does not
// leak internals. Plus the one error of the API's own load generator (`kmoe bench serve`).

import { KmoeError } from '../../shared/errors/kmoe-error.js';
import { formatExpertSet } from '../../shared/protocol/expert-set.js';

/** Longest error message sent or logged. */
const MAX_MESSAGE_CHARS = 2000;

/** Client-sent text quoted in a message, cut at `max` characters (an 8 MiB field must not come back whole). */
function clipped(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * A header value quoted in a message. Node reads header bytes as latin-1, one character per byte,
 * so `café` sent in UTF-8 (what clients send) arrives as `cafÃ©`: the bytes are decoded as UTF-8.
 * Other bytes are opaque (RFC 9110, 5.5: no charset is declared), so a value that is not UTF-8 has
 * each non-ASCII byte shown as `\xHH` rather than guessed at.
 */
function headerValueText(latin1: string): string {
  try {
    return UTF8.decode(Buffer.from(latin1, 'latin1'));
  } catch {
    return latin1.replace(/[\x80-\xff]/g, (c) => `\\x${c.charCodeAt(0).toString(16)}`);
  }
}

export interface OpenAIErrorBody {
  readonly error: {
    readonly message: string;
    readonly type: string;
    readonly param: string | null;
    readonly code: string;
  };
}

interface ApiErrorOptions {
  readonly param?: string | null;
  /** Stable machine-readable code; default: the class name in snake_case (KmoeError's rule). */
  readonly code?: string;
  readonly cause?: unknown;
}

export class ApiError extends KmoeError {
  readonly param: string | null;

  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    options: ApiErrorOptions = {},
  ) {
    // Messages may quote what the client sent (a model name, a routing spec): bounded, so an 8 MiB
    // field cannot come back as an 8 MiB error body and log line.
    super(clipped(message, MAX_MESSAGE_CHARS), {
      ...(options.cause === undefined ? {} : { cause: options.cause }),
      ...(options.code ? { code: options.code } : {}),
    });
    this.param = options.param ?? null;
  }

  body(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  /**
   * The response headers this error's status calls for, besides content-type and -length: the one
   * list both ways of answering (through fastify, and written raw to a socket) send.
   */
  headers(): Readonly<Record<string, string>> {
    const headers: Record<string, string> = {};
    if (this.status === 429 || this.status === 503) headers['retry-after'] = '1';
    // The rest of an oversized body is not read, so nothing more on the connection can be answered.
    if (this.status === 413) headers.connection = 'close';
    if (this.status === 401) headers['www-authenticate'] = 'Bearer';
    return headers;
  }
}

/** 400: the request cannot be served as written (bad JSON, bad field, prompt too long, ...). */
export class InvalidRequestError extends ApiError {
  constructor(message: string, options: ApiErrorOptions = {}) {
    super(400, 'invalid_request_error', message, options);
  }
}

/** 404 / 405: no such endpoint, or the endpoint does not take this method. */
export class RouteNotFoundError extends ApiError {
  /** The methods the path takes (the 405's Allow header); empty for a 404. */
  readonly allowed: readonly string[];

  /** `methods`: those the path's routes take; HEAD is added wherever GET is, as fastify answers it. */
  constructor(method: string, requestPath: string, methods: readonly string[]) {
    const path = clipped(requestPath, 200);
    const allowed = methods.includes('GET') && !methods.includes('HEAD') ? [...methods, 'HEAD'] : methods;
    super(
      allowed.length === 0 ? 404 : 405,
      'invalid_request_error',
      allowed.length === 0
        ? `no endpoint ${path}; kmoe serves /v1/completions, /v1/chat/completions, /v1/models, /health, /ready and /metrics`
        : `${path} does not accept ${method}; use ${allowed.length === 1 ? allowed[0] : `${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)}`}`,
      { code: allowed.length === 0 ? 'not_found' : 'method_not_allowed' },
    );
    this.allowed = allowed;
  }

  override headers(): Readonly<Record<string, string>> {
    // RFC 9110: a 405 names the methods the resource does take.
    return this.allowed.length === 0
      ? super.headers()
      : { ...super.headers(), allow: this.allowed.join(', ') };
  }
}

/** 404: a request named a model this server does not serve (OpenAI and vLLM answer 404 too). */
export class ModelNotFoundError extends ApiError {
  constructor(model: string, servedModelName: string) {
    const shown = clipped(model, 200);
    super(
      404,
      'invalid_request_error',
      `model '${shown}' is not served here; this server serves '${servedModelName}'`,
      {
        param: 'model',
        code: 'model_not_found',
      },
    );
  }
}

/** 401: the API requires a key (kmoe serve --api-key) and the request has none or another one. */
export class InvalidApiKeyError extends ApiError {
  constructor(given: boolean) {
    super(
      401,
      'invalid_request_error',
      given
        ? 'incorrect API key provided'
        : 'no API key provided: send it in the header "Authorization: Bearer KEY"',
      { code: 'invalid_api_key' },
    );
  }
}

/** 403: a loopback server without an API key was addressed by a name that is not loopback (host-check.ts). */
export class HostNotAllowedError extends ApiError {
  constructor(hostHeader: string) {
    const shown = clipped(hostHeader, 100);
    super(
      403,
      'invalid_request_error',
      `this server listens on loopback without an API key and answers only requests addressed to localhost, 127.0.0.1 or [::1], not Host ${JSON.stringify(shown)} (a DNS rebinding guard); a proxy that forwards another name needs kmoe serve --allowed-hosts NAME, or --api-key`,
      { code: 'host_not_allowed' },
    );
  }
}

/** 415: a JSON endpoint was sent something other than `application/json` (e.g. a form post). */
export class UnsupportedMediaTypeError extends ApiError {
  constructor(contentType: string | undefined) {
    super(
      415,
      'invalid_request_error',
      contentType === undefined
        ? 'the request has a body but no content-type; send it as application/json'
        : `content-type '${contentType.slice(0, 100)}' is not accepted; send the body as application/json`,
      { code: 'unsupported_media_type' },
    );
  }
}

/**
 * 400 / 408 / 431 and friends that Node's HTTP parser or the body reader raise before any handler
 * runs (bad request line, bad chunked encoding, oversized headers, a body shorter than its length).
 */
export class MalformedHttpError extends ApiError {
  constructor(status: number, code: string, message: string) {
    super(status, 'invalid_request_error', message, { code });
  }
}

/** 417: an `Expect` header other than `100-continue`, the only expectation HTTP/1.1 defines. */
export class ExpectationFailedError extends ApiError {
  /** `expect`: the header's value as Node gives it (each byte a latin-1 character). */
  constructor(expect: string) {
    super(
      417,
      'invalid_request_error',
      `expect: ${clipped(headerValueText(expect), 100)} is not supported; only 100-continue is`,
      { code: 'expectation_failed' },
    );
  }
}

/** 413: the body is larger than the server reads (a prompt that large could not fit the context anyway). */
export class PayloadTooLargeError extends ApiError {
  constructor(limitBytes: number) {
    super(413, 'invalid_request_error', `request body exceeds ${limitBytes} bytes`, {
      code: 'payload_too_large',
    });
  }
}

/** 429: the running set and the queue are full; the client should retry later. */
export class ServerBusyError extends ApiError {
  constructor(running: number, queued: number) {
    super(
      429,
      'rate_limit_error',
      `server is at capacity (${running} running and ${queued} queued sequences); retry later`,
      { code: 'server_busy' },
    );
  }
}

/** 429: as many prompts as the server can queue are waiting for the tokenizer thread already. */
export class TokenizerBusyError extends ApiError {
  constructor(pending: number) {
    super(429, 'rate_limit_error', `${pending} prompts are waiting to be tokenized already; retry later`, {
      code: 'server_busy',
    });
  }
}

/** 429: validating new large inline routing profiles has had its share of this second (routing-catalog.ts). */
export class ProfilesBusyError extends ApiError {
  constructor() {
    super(
      429,
      'rate_limit_error',
      'the server is validating other new inline routing profiles this second; retry later, or start kmoe serve with --profiles FILE and name the profile',
      { code: 'server_busy', param: 'kmoe.routing' },
    );
  }
}

/** 503: the server is shutting down and takes no new work (or it cut a request short at the deadline). */
export class ShuttingDownError extends ApiError {
  constructor(message = 'server is shutting down and accepts no new requests') {
    super(503, 'server_error', message, { code: 'shutting_down' });
  }
}

/**
 * 503: the request was routed to experts that have no live worker (every worker holding them
 * exited, died or left); requests routed elsewhere still run. `missing`: the experts it needed.
 */
export class ExpertsUnavailableError extends ApiError {
  constructor(detail: string, missing?: readonly number[]) {
    const named = missing === undefined ? '' : ` ${formatExpertSet(missing)}`;
    super(503, 'server_error', `this request needs experts${named}, which no live worker holds (${detail})`, {
      code: 'experts_unavailable',
    });
  }
}

/** 500: a forward step failed; every sequence in that step ends with this error. */
export class EngineStepError extends ApiError {
  constructor(detail: string, cause: unknown) {
    super(500, 'server_error', `the engine failed while generating: ${detail}`, {
      code: 'engine_error',
      cause,
    });
  }
}

/** 500 for anything unexpected: the details go to the log under the request id, not to the client. */
export class InternalServerError extends ApiError {
  constructor(requestId: string, cause: unknown) {
    super(500, 'server_error', `internal server error (request id ${requestId}; see the server log)`, {
      code: 'internal_error',
      cause,
    });
  }
}

/** `kmoe bench serve`: a request to the server under test failed (HTTP error, error event, cut stream). */
export class ServeRequestError extends KmoeError {}
