// Entry point of a worker's compute thread: owns the ExpertHost of the worker's experts. Session
// runs block their thread, so they live here and the network thread stays free to read frames,
// answer handshakes and reply errors while a batch is being computed.

import { serveThread } from '../shared/runtime/thread-rpc.js';
import { CONCURRENT_COMPUTE_CALLS, computeHandlers } from './compute-handlers.js';
import type { ComputeSchema } from './compute-protocol.js';

serveThread<ComputeSchema>(computeHandlers(), { concurrent: CONCURRENT_COMPUTE_CALLS });
