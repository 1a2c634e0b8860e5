// The /metrics exposition with label values a peer chose (a worker's URL, as the registry or
// --workers gave it): escaped like every other quoted peer text, and still valid Prometheus text.

import { describe, expect, it } from 'vitest';
import { DispatchStats } from '../../../coordinator/cluster/dispatch-stats.js';
import { ServerMetrics } from '../../../coordinator/server/metrics.js';
import { DISPATCH_LATENCY_BUCKETS_SECONDS } from '../../../shared/protocol/messages.js';
import { RoutingStats } from '../../../shared/routing/stats.js';

const model = { numLayers: 1, numExperts: 4, nativeK: 2 };

/** The exposition of a coordinator whose one worker has the URL `url` and answered one dispatch. */
async function exposition(url: string): Promise<string> {
  const dispatch = new DispatchStats(
    { wire: 'fp32', nativeK: 2, hidden: 8, workers: [{ url, experts: '0-3' }] },
    1,
  );
  dispatch.recordMessage(0, 0, { bytesOut: 100, bytesIn: 50, pairs: 2, tokensSent: 1, seconds: 0.01 });
  const metrics = new ServerMetrics(model, {
    routingStats: async () => new RoutingStats(model).toJSON(),
    dispatchStats: async () => dispatch.toJSON(),
    engineSequences: async () => 0,
  });
  return metrics.render();
}

/** The `worker` label values of the exposition's sample lines, as written (still escaped). */
function workerLabels(text: string): string[] {
  return [...text.matchAll(/worker="((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
}

describe('/metrics label values from peers', () => {
  it('escape bidi controls, invisible and line-separator characters in a worker URL', async () => {
    // RLO, zero width space, a tag character, the line separator, a lone surrogate, DEL.
    const text = await exposition('ws://127.0.0.1:1/\u202eexe.tpircs\u200b\u{e0041}\u2028\ud800\u007f');
    expect(/[\p{Cc}\p{Cf}\p{Cs}\u2028\u2029]/u.test(text.replaceAll('\n', ''))).toBe(false);
    const labels = workerLabels(text);
    // Bytes in and out, messages; round trips: a bucket per bound and +Inf, sum and count.
    expect(labels.length).toBe(3 + DISPATCH_LATENCY_BUCKETS_SECONDS.length + 3);
    for (const l of labels)
      expect(l).toBe('ws://127.0.0.1:1/\\\\u202eexe.tpircs\\\\u200b\\\\u{e0041}\\\\u2028\\\\ud800\\\\u007f');
  });

  it('escape a newline like any control, and keep the exposition escapes of backslash and quote valid', async () => {
    const text = await exposition('ws://h:1/a"b\\c\nkmoe_forged_total 1');
    expect(text).not.toMatch(/^kmoe_forged_total/m);
    for (const l of workerLabels(text)) {
      // The text format knows three escapes: \\ \" \n (anything else is a parse error).
      expect(l.replaceAll(/\\["\\n]/g, '')).not.toMatch(/[\\"]/);
      expect(l).toBe('ws://h:1/a\\"b\\\\c\\\\u000akmoe_forged_total 1');
    }
  });

  it('leave a plain worker URL as it is', async () => {
    const labels = workerLabels(await exposition('ws://10.0.0.2:7070/experts'));
    expect(new Set(labels)).toEqual(new Set(['ws://10.0.0.2:7070/experts']));
  });
});
