// What a coordinator says of a connected worker whose frames fit few tokens (WorkerSmallFrames):
// `kmoe serve` logs it; the one-shot commands that run through workers (eval, generate, the
// benches) print it on stderr, where their operator reads why a prefill through that worker is slow.

import { FEW_TOKENS_PER_FRAME, tokenCount } from '../../shared/protocol/frame-capacity.js';
import type { WorkerSmallFrames } from '../cluster/remote-expert-backend.js';
import type { EngineClient } from '../engine/engine-client.js';

/** What follows "a worker's frame limit" (serve's log) or "worker URL's frame limit" (stderr). */
export function smallFramesMessage(e: WorkerSmallFrames): string {
  const effect =
    e.tokens === 0
      ? `requests that need an expert only this worker holds fail, and its experts' other replicas take the rest`
      : `larger shares are cut into requests of that many, one round trip each (slower prefill and large batches)`;
  const anyWire = e.anyWireFrameMib === e.chunkFrameMib ? '' : ` (${e.anyWireFrameMib} on any wire)`;
  return `fits ${tokenCount(e.tokens)} of a request on the ${e.wire} wire: ${effect}; restart it with --max-frame-mb ${e.chunkFrameMib}${anyWire} to fit ${FEW_TOKENS_PER_FRAME}`;
}

/** Prints each WorkerSmallFrames of `engine` on stderr. */
export function printSmallFrames(engine: EngineClient, command: string): void {
  engine.onWorkerSmallFrames((e) =>
    process.stderr.write(
      `kmoe ${command}: warning: worker ${e.url}'s frame limit ${smallFramesMessage(e)}\n`,
    ),
  );
}
