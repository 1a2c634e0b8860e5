// Request/response calls between a main thread and a worker_thread that owns onnxruntime sessions,
// plus events the thread pushes on its own (e.g. a worker connection dropped). Errors cross the
// boundary with their name, message and hint; a thread that dies fails every pending call instead
// of leaving it hanging.

import { type MessagePort, parentPort, type Transferable, type Worker } from 'node:worker_threads';
import { KmoeError, type SerializedKmoeError } from '../errors/kmoe-error.js';
import { startThread } from './entry-points.js';

/** method name -> [params, result] */
export type RpcSchema = Record<string, [unknown, unknown]>;

type Request = { id: number; method: string; params: unknown };
type Response =
  | { id: null; event: string; payload: unknown }
  | { id: number; progress: { done: number; total: number } }
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: SerializedKmoeError };

/**
 * An error raised inside the thread, re-raised in the caller with the same name, code, details and
 * hint, so callers map it (an API status, an exit code) exactly as they would the original.
 */
export class ThreadCallError extends KmoeError {
  readonly remoteName: string;
  readonly remoteStack: string | undefined;

  constructor(remote: SerializedKmoeError) {
    super(remote.message, {
      ...(remote.hint === undefined ? {} : { hint: remote.hint }),
      code: remote.code,
      details: remote.details,
    });
    this.name = remote.name;
    this.remoteName = remote.name;
    this.remoteStack = remote.stack;
  }
}

export class ThreadExitedError extends KmoeError {
  constructor(what: string, detail: string) {
    super(`${what} thread stopped: ${detail}`);
  }
}

/** What a handler returns: the result plus buffers to move (not copy) to the caller. */
export interface Reply<R> {
  readonly result: R;
  readonly transfer?: readonly Transferable[];
}

/** Reports progress of a long call to the caller's onProgress. */
export type ProgressReporter = (done: number, total: number) => void;

export type Handlers<S extends RpcSchema> = {
  [K in keyof S]: (params: S[K][0], progress: ProgressReporter) => Promise<Reply<S[K][1]>> | Reply<S[K][1]>;
};

/** What calls a thread's handlers: a ThreadClient, or InlineCalls running the same handlers here. */
export interface RpcCaller<S extends RpcSchema> {
  call<K extends keyof S & string>(
    method: K,
    params: S[K][0],
    transfer?: readonly Transferable[],
  ): Promise<S[K][1]>;
  terminate(): Promise<void>;
}

export class ThreadClient<S extends RpcSchema> implements RpcCaller<S> {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; onProgress: ProgressReporter | undefined }
  >();
  private exited: Error | undefined;
  private readonly listeners: ((event: string, payload: unknown) => void)[] = [];

  private constructor(
    private readonly what: string,
    private readonly worker: Worker,
  ) {
    worker.on('message', (msg: Response) => this.settle(msg));
    worker.on('error', (err) => this.fail(new ThreadExitedError(what, err.message)));
    worker.on('exit', (code) => this.fail(new ThreadExitedError(what, `exit code ${code}`)));
  }

  /** Starts the thread whose script is `relative` (no extension) to the module at `base`. */
  static start<S extends RpcSchema>(what: string, base: string, relative: string): ThreadClient<S> {
    return new ThreadClient<S>(what, startThread(base, relative));
  }

  call<K extends keyof S & string>(
    method: K,
    params: S[K][0],
    transfer: readonly Transferable[] = [],
    onProgress?: ProgressReporter,
  ): Promise<S[K][1]> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise<S[K][1]>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onProgress });
      const req: Request = { id, method, params };
      this.worker.postMessage(req, [...transfer]);
    });
  }

  /** Events the thread emits, in the order it emitted them (and before any later call's reply). */
  onEvent(listener: (event: string, payload: unknown) => void): void {
    this.listeners.push(listener);
  }

  async terminate(): Promise<void> {
    this.fail(new ThreadExitedError(this.what, 'terminated'));
    await this.worker.terminate();
  }

  private settle(msg: Response): void {
    if (msg.id === null) {
      for (const l of this.listeners) l(msg.event, msg.payload);
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return;
    if ('progress' in msg) {
      p.onProgress?.(msg.progress.done, msg.progress.total);
      return;
    }
    this.pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.result);
    else p.reject(new ThreadCallError(msg.error));
  }

  private fail(err: Error): void {
    if (!this.exited) this.exited = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

/** Pushes an event (structured-clonable payload) to the thread's client. */
export type EmitEvent = (event: string, payload: unknown) => void;

/**
 * Serves calls on this worker thread's parent port, one at a time, in arrival order, except the
 * `concurrent` methods: those start at once and run beside the queue, interleaving with it at
 * their awaits (a long load must not hold up the calls that serve requests). Returns the function
 * that pushes events to the client, outside any call.
 */
export function serveThread<S extends RpcSchema>(
  handlers: Handlers<S>,
  options: { readonly concurrent?: readonly (keyof S & string)[] } = {},
): EmitEvent {
  const port = parentPort;
  if (!port) throw new Error('serveThread must run inside a worker_thread');
  const order = new CallOrder(options.concurrent);
  port.on('message', (req: Request) => order.run(req.method, () => handle(port, handlers, req)));
  return (event, payload) => {
    const msg: Response = { id: null, event, payload };
    port.postMessage(msg);
  };
}

/**
 * The order calls run in: one at a time in arrival order, except the `concurrent` methods, which
 * start at once and interleave with the queue at their awaits.
 */
class CallOrder {
  private queue: Promise<void> = Promise.resolve();
  private readonly concurrent: ReadonlySet<string>;

  constructor(concurrent: readonly string[] = []) {
    this.concurrent = new Set(concurrent);
  }

  run(method: string, task: () => Promise<void>): void {
    if (this.concurrent.has(method)) void task();
    else this.queue = this.queue.then(task);
  }
}

/**
 * A thread's handlers run in the calling thread, in the order serveThread would run them. For a
 * process whose only network traffic is waiting for these calls anyway (a private local worker):
 * it saves the two thread hand-offs per call, and blocks this thread's event loop while a
 * handler runs synchronously. Errors reach the caller as thrown; progress is not reported.
 */
export class InlineCalls<S extends RpcSchema> implements RpcCaller<S> {
  private readonly order: CallOrder;

  constructor(
    private readonly handlers: Handlers<S>,
    options: { readonly concurrent?: readonly (keyof S & string)[] } = {},
  ) {
    this.order = new CallOrder(options.concurrent);
  }

  call<K extends keyof S & string>(method: K, params: S[K][0]): Promise<S[K][1]> {
    const handler = this.handlers[method];
    return new Promise<S[K][1]>((resolve, reject) => {
      this.order.run(method, async () => {
        try {
          resolve((await handler(params, () => {})).result);
        } catch (err) {
          reject(err);
        }
      });
    });
  }

  async terminate(): Promise<void> {}
}

async function handle<S extends RpcSchema>(
  port: MessagePort,
  handlers: Handlers<S>,
  req: Request,
): Promise<void> {
  const handler = handlers[req.method as keyof S];
  try {
    if (!handler) throw new Error(`unknown method ${req.method}`);
    const progress: ProgressReporter = (done, total) => {
      const update: Response = { id: req.id, progress: { done, total } };
      port.postMessage(update);
    };
    const reply = await handler(req.params as S[keyof S][0], progress);
    const res: Response = { id: req.id, ok: true, result: reply.result };
    port.postMessage(res, [...(reply.transfer ?? [])]);
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    // Non-kmoe errors (a RangeError from a bad step, a bug) keep their name; their code says so.
    const error: SerializedKmoeError =
      e instanceof KmoeError
        ? e.serialize()
        : {
            name: e.name,
            code: 'internal',
            message: e.message,
            details: {},
            ...(e.stack ? { stack: e.stack } : {}),
          };
    const res: Response = { id: req.id, ok: false, error };
    port.postMessage(res);
  }
}
