// The default of --dispatch-timeout, apart from the dispatch code so the CLI shows it without
// loading the WebSocket client.

/** How long a worker request may take before the worker counts as failed for it. */
export const DEFAULT_DISPATCH_TIMEOUT_MS = 30_000;
