// The network thread's handle on the worker's expert computation: starts it, loads the experts,
// forwards validated dispatches and gets back ready-to-send result frames. It runs on a compute
// thread of its own, or inline on the socket thread for a private local worker.

import type { ComputePlacement } from '../shared/protocol/compute-placement.js';
import { InlineCalls, type RpcCaller, ThreadClient } from '../shared/runtime/thread-rpc.js';
import { CONCURRENT_COMPUTE_CALLS, computeHandlers } from './compute-handlers.js';
import type {
  ComputeHoldings,
  ComputeInit,
  ComputeModel,
  ComputeReply,
  ComputeRequest,
  ComputeSchema,
} from './compute-protocol.js';

export class ExpertCompute {
  private constructor(
    private readonly calls: RpcCaller<ComputeSchema>,
    readonly model: ComputeModel,
    readonly placement: ComputePlacement,
    private readonly skipQueued: Int32Array,
  ) {}

  static async start(init: ComputeInit, placement: ComputePlacement): Promise<ExpertCompute> {
    const calls: RpcCaller<ComputeSchema> =
      placement === 'thread'
        ? ThreadClient.start<ComputeSchema>('worker compute', import.meta.url, './compute-thread')
        : new InlineCalls(computeHandlers(), { concurrent: CONCURRENT_COMPUTE_CALLS });
    // Shared, so the compute thread sees it set while its queue still holds dispatches.
    const skipQueued = new Int32Array(new SharedArrayBuffer(4));
    try {
      return new ExpertCompute(
        calls,
        await calls.call('init', { ...init, skipQueued }),
        placement,
        skipQueued,
      );
    } catch (err) {
      await calls.terminate();
      throw err;
    }
  }

  /** Moves the request frame to the compute thread (if any); returns the result frame (if finite). */
  dispatch(req: ComputeRequest): Promise<ComputeReply> {
    return this.calls.call('dispatch', req, [req.frame.buffer as ArrayBuffer]);
  }

  /** Loads more experts; requests keep being answered between sessions built. */
  load(experts: readonly number[]): Promise<ComputeHoldings> {
    return this.calls.call('load', experts);
  }

  /** Releases experts; call only once no request for them can still reach the computation. */
  unload(experts: readonly number[]): Promise<ComputeHoldings> {
    return this.calls.call('unload', experts);
  }

  /**
   * Dispatches not yet started are skipped from now on (answered `skipped`, not computed): for a
   * shutdown once no reply can be sent, so that a queue a coordinator filled does not hold the exit.
   * The one being computed finishes (an onnxruntime call cannot be cut safely).
   */
  skipQueuedDispatches(): void {
    Atomics.store(this.skipQueued, 0, 1);
  }

  async close(): Promise<void> {
    try {
      await this.calls.call('close', null);
    } finally {
      await this.calls.terminate();
    }
  }
}
