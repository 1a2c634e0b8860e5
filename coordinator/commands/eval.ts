// `kmoe eval`: perplexity and expert usage of a routing policy on a corpus.

import { parseWindowRange, readTextIds, readU16Ids } from '../../shared/data/token-ids.js';
import { UsageError } from '../../shared/errors/usage-error.js';
import { KmoeTokenizer } from '../../shared/model/tokenizer.js';
import { ProgressBar } from '../../shared/report/progress.js';
import { EngineClient } from '../engine/engine-client.js';
import {
  evaluatePerplexity,
  type PerplexityReport,
  STANDARD_WINDOW,
  windowCount,
} from '../evaluation/perplexity.js';
import { COMPUTE_OPTIONS, checkRouting, flag, num, parse, required, sessionSettings, str } from './args.js';

export const usage = `kmoe eval --model DIR (--ids FILE.u16 | --text FILE) [options]

Perplexity by the standard procedure: non-overlapping windows of 256 ids (trailing partial window
dropped), no BOS, positions 1..255 of each window scored given the earlier tokens of the window.

  --model DIR          checkpoint directory
  --ids FILE.u16       token ids, little-endian uint16 (e.g. data/eval/valid.code.u16)
  --text FILE          UTF-8 text, encoded with the model's tokenizer in pieces cut at line ends
  --routing SPEC|FILE  topk:K | entropy:K1,K2@T1 | topp:P@KMIN-KMAX | ratio:BETA | profile.json
                       (default: the model's native top-K)
  --windows RANGE      START:END window indices, or first-half / second-half (default: all)
  --window N           window length (default 256)
  --batch N            windows per forward pass (default 4)
  --json               print one JSON object on the last line of stdout
  --threads N          onnxruntime threads (default: all cores)
  --device cpu|cuda    execution provider (default cpu)`;

export async function run(argv: readonly string[]): Promise<number> {
  const p = parse(argv, {
    model: { type: 'string' },
    ids: { type: 'string' },
    text: { type: 'string' },
    routing: { type: 'string' },
    windows: { type: 'string' },
    window: { type: 'string' },
    batch: { type: 'string' },
    json: { type: 'boolean' },
    ...COMPUTE_OPTIONS,
  });
  const modelDir = required(p, 'model');
  const idsPath = str(p, 'ids');
  const textPath = str(p, 'text');
  if ((idsPath === undefined) === (textPath === undefined))
    throw new UsageError('give exactly one of --ids or --text');
  const windowLen = num(p, 'window', STANDARD_WINDOW, { integer: true, min: 2 });
  const batchWindows = num(p, 'batch', 4, { integer: true, min: 1, max: 64 });
  const ids =
    idsPath !== undefined
      ? await readU16Ids(idsPath)
      : await readTextIds(textPath!, await KmoeTokenizer.load(modelDir));
  const available = windowCount(ids, windowLen);
  if (available === 0)
    throw new UsageError(`the corpus has ${ids.length} ids: fewer than one window of ${windowLen}`);
  const windows = parseWindowRange(str(p, 'windows'), available);
  const routingArg = str(p, 'routing');
  await checkRouting(modelDir, routingArg);

  const engine = await EngineClient.start({
    modelDir,
    settings: sessionSettings(p),
    ...(routingArg === undefined ? {} : { defaultRouting: routingArg }),
  });
  let report: PerplexityReport;
  try {
    const bar = new ProgressBar({
      label: 'eval',
      total: windows.end - windows.start,
      unit: 'windows',
      rate: { unit: 'tok', perItem: windowLen },
    });
    report = await evaluatePerplexity(engine, ids, {
      windowLen,
      batchWindows,
      windows,
      onProgress: (done, _total, ppl) => bar.update(done, `ppl ${ppl.toFixed(3)}`),
    });
    bar.finish(`ppl ${report.perplexity.toFixed(4)}`);
  } finally {
    await engine.close();
  }
  process.stdout.write(formatReport(report, idsPath ?? textPath!));
  if (flag(p, 'json')) {
    const { stats: _stats, ...summary } = report;
    process.stdout.write(`${JSON.stringify({ corpus: idsPath ?? textPath, ...summary })}\n`);
  }
  return 0;
}

function formatReport(r: PerplexityReport, corpus: string): string {
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  const lines = [
    `corpus        ${corpus} (${r.windows} windows of ${r.windowLen})`,
    `routing       ${r.routing}`,
    `perplexity    ${r.perplexity.toFixed(4)}   (${r.tokens} tokens scored, mean NLL ${r.meanNll.toFixed(5)})`,
    `avg K         ${r.avgK.toFixed(4)}   per layer: ${r.avgKPerLayer.map((k) => k.toFixed(3)).join(' ')}`,
    `K histogram   ${r.kHistogram
      .map((n, k) => `K=${k + 1}: ${n}`)
      .filter((s) => !s.endsWith(': 0'))
      .join(', ')}`,
    `activations   ${r.activations} expert-token pairs vs ${r.nativeActivations} native: saving ${pct(r.savingVsNative)}`,
    `entropy       mean per layer (nats): ${r.meanEntropyPerLayer.map((h) => h.toFixed(3)).join(' ')}`,
    `throughput    ${r.tokensPerSecond.toFixed(0)} tokens/s (${r.seconds.toFixed(1)} s)`,
  ];
  return `${lines.join('\n')}\n`;
}
