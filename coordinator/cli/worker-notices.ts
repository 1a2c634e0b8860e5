// What a coordinator says of a connected worker whose frames fit few tokens (WorkerSmallFrames):
// `kmoe serve` logs it; the one-shot commands that run through workers (eval, generate, the
// benches) print it on stderr, where their operator reads why a prefill through that worker is slow.

import { FEW_TOKENS_PER_FRAME, tokenCount } from '../../shared/protocol/frame-capacity.js';
import type { WorkerSmallFrames } from '../cluster/remote-expert-backend.js';
import type { EngineClient } from '../engine/engine-client.js';

export function smallFramesMessage(e: WorkerSmallFrames): string {
  return `a worker's frame limit fits ${tokenCount(e.tokens)} of a request on the ${e.wire} wire: larger shares are cut into requests of that many, one round trip each (slower prefill and large batches); its --max-frame-mb ${e.chunkFrameMib} fits ${FEW_TOKENS_PER_FRAME}`;
}

/** Prints each WorkerSmallFrames of `engine` on stderr. */
export function printSmallFrames(engine: EngineClient, command: string): void {
  engine.onWorkerSmallFrames((e) =>
    process.stderr.write(`kmoe ${command}: warning: worker ${e.url}: ${smallFramesMessage(e)}\n`),
  );
}
