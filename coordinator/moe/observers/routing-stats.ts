// Running routing statistics (K per token, entropy, expert load per MoE layer) as an observer of the seam.

import type { RoutingStats } from '../../../shared/routing/stats.js';
import type { MoeObserver } from '../observer.js';

export function routingStatsObserver(stats: RoutingStats): MoeObserver {
  return { observe: (e) => stats.record(e.moeLayer, e.decision) };
}
