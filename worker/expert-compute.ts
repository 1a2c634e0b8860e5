// The network thread's handle on the compute thread: starts it, loads the experts, forwards
// validated dispatches and gets back ready-to-send result frames.

import { ThreadClient } from '../shared/runtime/thread-rpc.js';
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
    private readonly thread: ThreadClient<ComputeSchema>,
    readonly model: ComputeModel,
  ) {}

  static async start(init: ComputeInit): Promise<ExpertCompute> {
    const thread = ThreadClient.start<ComputeSchema>('worker compute', import.meta.url, './compute-thread');
    try {
      return new ExpertCompute(thread, await thread.call('init', init));
    } catch (err) {
      await thread.terminate();
      throw err;
    }
  }

  /** Moves the request frame to the compute thread; returns the result frame (if finite). */
  dispatch(req: ComputeRequest): Promise<ComputeReply> {
    return this.thread.call('dispatch', req, [req.frame.buffer as ArrayBuffer]);
  }

  /** Loads more experts on the compute thread; requests keep being answered between sessions built. */
  load(experts: readonly number[]): Promise<ComputeHoldings> {
    return this.thread.call('load', experts);
  }

  /** Releases experts; call only once no request for them can still reach the compute thread. */
  unload(experts: readonly number[]): Promise<ComputeHoldings> {
    return this.thread.call('unload', experts);
  }

  async close(): Promise<void> {
    try {
      await this.thread.call('close', null);
    } finally {
      await this.thread.terminate();
    }
  }
}
