// A full garbage collection on demand, for loaders that drop hundreds of MB of ArrayBuffers per
// step (an expert's checkpoint bytes, fp32 widening, transposed copy, serialized graph). V8 frees
// them only when it next collects, which on a thread busy in onnxruntime's session creation can
// be several experts later: measured on one 8x7B-shaped layer, 2 fp32 experts peaked at 4.6 GB
// with 1.4 GB held. Node exposes gc() only under --expose-gc; the flag is set for the moment the
// function is taken (how jest's leak detector does it) so no command line has to carry it.

import v8 from 'node:v8';
import vm from 'node:vm';

let gc: (() => void) | undefined;

export function collectGarbage(): void {
  if (gc === undefined) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
    v8.setFlagsFromString('--no-expose-gc');
  }
  gc();
}
