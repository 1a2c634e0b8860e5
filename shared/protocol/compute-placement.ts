// Where a worker computes its experts: its `--compute` flag, which the coordinator's local clusters
// also set when they start workers.

/**
 * Where a worker's experts compute. `thread`: a compute thread; the socket thread stays free for
 * handshakes, /health, /metrics, the registry and error replies while a batch computes. `inline`:
 * on the socket thread, which answers nothing else meanwhile; it saves two thread hand-offs per
 * request, for a worker whose only client is the coordinator that started it.
 */
export type ComputePlacement = 'thread' | 'inline';
export const COMPUTE_PLACEMENTS: readonly ComputePlacement[] = ['thread', 'inline'];
