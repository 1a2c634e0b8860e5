// `kmoe serve` end to end with the official `openai` client on loopback: completions streamed and
// whole, greedy output against the reference (= `kmoe generate`), sampling, stop strings,
// per-request routing and usage, 16 concurrent streams against their solo outputs, client
// disconnects, every bad-input case, and the status endpoints and metrics.

import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import type {
  CompletionCreateParamsNonStreaming,
  CompletionCreateParamsStreaming,
} from 'openai/resources/completions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Usage } from '../../../coordinator/server/openai-format.js';
import { KmoeTokenizer } from '../../../shared/model/tokenizer.js';
import { runCli } from '../../helpers/cli.js';
import { overflowingMeansProfile, overflowingSubstituteProfile } from '../../helpers/overflowing-profile.js';
import { EVAL_DIR, greedyCases, MODEL_DIR, ROOT, referenceGreedyText } from '../../helpers/paths.js';
import { parseScrape, scrape } from '../../helpers/prometheus.js';
import { type ServeProcess, startServe } from './serve-process.js';

const MODEL = 'tiny-mixtral';

let server: ServeProcess;
let client: OpenAI;
let tokenizer: KmoeTokenizer;

beforeAll(async () => {
  server = await startServe(['--workers', '0']);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  tokenizer = await KmoeTokenizer.load(MODEL_DIR);
});

afterAll(async () => {
  expect(await server?.stop()).toBe(0);
});

type KmoeFields = { kmoe?: { routing?: string | object; ignore_eos?: boolean } };

function complete(params: Omit<CompletionCreateParamsNonStreaming, 'model'> & KmoeFields) {
  return client.completions.create({ model: MODEL, ...params } as CompletionCreateParamsNonStreaming);
}

/** Streams a completion; returns the text, finish reason, usage chunk and number of text chunks. */
async function streamed(params: Omit<CompletionCreateParamsStreaming, 'model' | 'stream'> & KmoeFields) {
  const stream = await client.completions.create({
    model: MODEL,
    stream: true,
    stream_options: { include_usage: true },
    ...params,
  } as CompletionCreateParamsStreaming);
  let text = '';
  let finish: string | null = null;
  let usage: Usage | undefined;
  let chunks = 0;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (choice) {
      text += choice.text;
      chunks++;
      finish = choice.finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage as unknown as Usage;
  }
  return { text, finish, usage, chunks };
}

function usageOf(u: unknown): Usage {
  return u as Usage;
}

async function health(): Promise<{
  status: string;
  sequences: { running: number; queued: number; engine: number };
}> {
  return (await fetch(`${server.url}/health`)).json() as Promise<{
    status: string;
    sequences: { running: number; queued: number; engine: number };
  }>;
}

/** One series' current value from /metrics. */
async function metric(series: string): Promise<number> {
  return (await scrape(`${server.url}/metrics`))(series);
}

async function idle(): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const h = await health();
    if (h.sequences.running === 0 && h.sequences.queued === 0 && h.sequences.engine === 0) return;
    if (Date.now() > deadline) throw new Error(`server not idle: ${JSON.stringify(h)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('status endpoints', () => {
  it('lists the served model with its context and routing', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
    expect(models.data[0]).toMatchObject({
      object: 'model',
      kmoe: { context_length: 4096, num_experts: 8, native_k: 2, default_routing: 'topk:2' },
    });
  });

  it("retrieves the served model by name (OpenAI's models.retrieve), and 404s any other name", async () => {
    const listed = (await client.models.list()).data[0];
    expect(await client.models.retrieve(MODEL)).toEqual(listed);
    const other = await fetch(`${server.url}/v1/models/gpt-4`);
    expect(other.status).toBe(404);
    expect(((await other.json()) as { error: { code: string; message: string } }).error).toMatchObject({
      code: 'model_not_found',
      message: "model 'gpt-4' is not served here; this server serves 'tiny-mixtral'",
    });
    // A name with a slash (as vLLM users name models) reaches the route whole.
    expect((await fetch(`${server.url}/v1/models/org/tiny-mixtral`)).status).toBe(404);
    const post = await fetch(`${server.url}/v1/models/${MODEL}`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    await post.body?.cancel();
    // An empty name: GET is the route's (no such model); other methods get its 405, as on any path.
    const empty = await fetch(`${server.url}/v1/models/`);
    expect(empty.status).toBe(404);
    expect(((await empty.json()) as { error: { code: string } }).error.code).toBe('model_not_found');
    for (const method of ['POST', 'DELETE']) {
      const wrong = await fetch(`${server.url}/v1/models/`, { method });
      expect(wrong.status, method).toBe(405);
      expect(wrong.headers.get('allow')).toBe('GET, HEAD');
      expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('method_not_allowed');
    }
  });

  it('names the address when a second server cannot listen on the same port', async () => {
    const port = new URL(server.url).port;
    const r = await runCli(['serve', '--model', MODEL_DIR, '--workers', '0', '--port', port]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    expect(r.stderr).toMatch(/hint: .*--port 0/);
  });

  it('answers /health and /ready, and echoes or creates request ids', async () => {
    expect(await health()).toEqual({ status: 'ok', sequences: { running: 0, queued: 0, engine: 0 } });
    const ready = await fetch(`${server.url}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', experts: { covered: true } });
    const echoed = await fetch(`${server.url}/health`, { headers: { 'x-request-id': 'trace-42' } });
    expect(echoed.headers.get('x-request-id')).toBe('trace-42');
    const created = await fetch(`${server.url}/health`);
    expect(created.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('completions', () => {
  it.each(greedyCases())('greedy completion of $name equals the reference continuation', async (c) => {
    const res = await complete({ prompt: c.prompt, max_tokens: c.greedyIds.length, temperature: 0 });
    expect(res.choices[0]!.text).toBe(referenceGreedyText(tokenizer, c));
    expect(res.choices[0]!.finish_reason).toBe('length');
    const usage = usageOf(res.usage);
    expect(usage).toMatchObject({
      prompt_tokens: c.promptIds.length,
      completion_tokens: c.greedyIds.length,
      total_tokens: c.promptIds.length + c.greedyIds.length,
      kmoe: { avg_k: 2, saving_vs_native: 0, bytes_dispatched: 0, routing: 'topk:2' },
    });
    // Every token but the last sampled one went through the model, 4 layers, 2 experts each.
    const processed = c.promptIds.length + c.greedyIds.length - 1;
    expect(usage.kmoe.processed_tokens).toBe(processed);
    expect(usage.kmoe.expert_activations).toBe(processed * 4 * 2);
  });

  it('prints what `kmoe generate` prints for the same prompt', async () => {
    const c = greedyCases()[1]!;
    const cli = await runCli(['generate', '--model', MODEL_DIR, '--prompt', c.prompt, '--max-tokens', '32']);
    expect(cli.code).toBe(0);
    const res = await complete({ prompt: c.prompt, max_tokens: 32, temperature: 0 });
    expect(`${res.choices[0]!.text}\n`).toBe(cli.stdout);
  });

  it('streams the same text in chunks, with usage when asked', async () => {
    const c = greedyCases()[0]!;
    const s = await streamed({ prompt: c.prompt, max_tokens: 32, temperature: 0 });
    expect(s.text).toBe(referenceGreedyText(tokenizer, c));
    expect(s.finish).toBe('length');
    expect(s.chunks).toBeGreaterThan(10);
    expect(s.usage).toMatchObject({ completion_tokens: 32, kmoe: { avg_k: 2 } });
  });

  it('takes a prompt as token ids', async () => {
    const c = greedyCases()[2]!;
    const res = await complete({ prompt: c.promptIds, max_tokens: 32, temperature: 0 });
    expect(res.choices[0]!.text).toBe(referenceGreedyText(tokenizer, c));
  });

  it('samples reproducibly with a seed', async () => {
    const ask = (seed: number) =>
      complete({ prompt: 'The', max_tokens: 24, temperature: 1, top_p: 0.9, seed });
    const [a, b, other] = await Promise.all([ask(7), ask(7), ask(8)]);
    expect(a.choices[0]!.text).toBe(b.choices[0]!.text);
    expect(a.choices[0]!.text).not.toBe(other.choices[0]!.text);
  });

  it('cuts the text before a stop string and reports finish_reason stop', async () => {
    const c = greedyCases()[0]!;
    const full = referenceGreedyText(tokenizer, c);
    const stop = 'def ';
    const expected = full.slice(0, full.indexOf(stop));
    const whole = await complete({ prompt: c.prompt, max_tokens: 32, temperature: 0, stop: [stop, 'never'] });
    expect(whole.choices[0]!.text).toBe(expected);
    expect(whole.choices[0]!.finish_reason).toBe('stop');
    const s = await streamed({ prompt: c.prompt, max_tokens: 32, temperature: 0, stop });
    expect(s.text).toBe(expected);
    expect(s.finish).toBe('stop');
  });

  it('routes each request with its own policy and reports experts per token against native', async () => {
    const prompt = greedyCases()[0]!.prompt;
    const [k1, entropy, inline, native] = await Promise.all([
      complete({ prompt, max_tokens: 8, temperature: 0, kmoe: { routing: 'topk:1' } }),
      complete({ prompt, max_tokens: 8, temperature: 0, kmoe: { routing: 'entropy:1,2@1.4' } }),
      complete({
        prompt,
        max_tokens: 8,
        temperature: 0,
        kmoe: { routing: { kmoeRoutingProfile: 1, policy: { kind: 'topk', k: 1 } } },
      }),
      complete({ prompt, max_tokens: 8, temperature: 0 }),
    ]);
    expect(usageOf(k1.usage).kmoe).toMatchObject({ avg_k: 1, saving_vs_native: 0.5, routing: 'topk:1' });
    expect(usageOf(inline.usage).kmoe).toMatchObject({ avg_k: 1, routing: 'topk:1' });
    expect(inline.choices[0]!.text).toBe(k1.choices[0]!.text);
    const e = usageOf(entropy.usage).kmoe;
    expect(e.routing).toBe('entropy:1,2@1.4');
    expect(e.avg_k).toBeGreaterThan(1);
    expect(e.avg_k).toBeLessThan(2);
    expect(e.expert_activations).toBe(Math.round(e.avg_k * e.processed_tokens * 4));
    expect(e.saving_vs_native).toBeCloseTo(1 - e.avg_k / 2, 12);
    expect(usageOf(native.usage).kmoe.avg_k).toBe(2);
  });

  it('routes by a large inline profile (sent to the engine as a handle) as by the same profile again', async () => {
    const prompt = greedyCases()[1]!.prompt;
    const profile = JSON.parse(readFileSync(`${ROOT}profiles/recommended.json`, 'utf8')) as Record<
      string,
      unknown
    >;
    const ask = () => complete({ prompt, max_tokens: 12, temperature: 0, kmoe: { routing: profile } });
    const [a, b] = await Promise.all([ask(), ask()]);
    const later = await ask();
    const k = usageOf(a.usage).kmoe;
    expect(k.routing).toBe('skip-sub32-quality-0.6pct');
    expect(k.avg_k).toBeLessThan(2);
    expect(a.choices[0]!.text.length).toBeGreaterThan(0);
    expect(b.choices[0]!.text).toBe(a.choices[0]!.text);
    expect(later.choices[0]!.text).toBe(a.choices[0]!.text);
    expect(usageOf(later.usage).kmoe).toEqual(k);
  });

  it('gives 16 concurrent streams the text each gets alone, long prompts prefilled in chunks', async () => {
    const docs = readFileSync(`${EVAL_DIR}/valid.docs.txt`, 'utf8');
    const code = readFileSync(`${EVAL_DIR}/valid.code.txt`, 'utf8');
    const prompts = [
      ...greedyCases().map((c) => c.prompt),
      // Up to ~900 characters: several prefill chunks of 64 tokens.
      ...Array.from({ length: 6 }, (_, i) => docs.slice(3000 * i, 3000 * i + 80 + 150 * i)),
      ...Array.from({ length: 6 }, (_, i) => code.slice(5000 * i, 5000 * i + 60 + 160 * i)),
    ];
    expect(prompts).toHaveLength(16);
    expect(Math.max(...prompts.map((p) => tokenizer.encode(p).length))).toBeGreaterThan(128);
    const alone: string[] = [];
    for (const prompt of prompts) {
      alone.push((await complete({ prompt, max_tokens: 24, temperature: 0 })).choices[0]!.text);
    }
    const batchedBefore = await metric('kmoe_engine_step_decode_sequences_bucket{le="8"}');
    const stepsBefore = await metric('kmoe_engine_step_decode_sequences_count');
    const together = await Promise.all(
      prompts.map((prompt) => streamed({ prompt, max_tokens: 24, temperature: 0 })),
    );
    expect(together.map((s) => s.text)).toEqual(alone);
    for (const s of together) expect(s.usage?.completion_tokens).toBeGreaterThan(0);
    await idle();
    // They really ran together: steps with more than 8 decoding sequences happened.
    const steps = (await metric('kmoe_engine_step_decode_sequences_count')) - stepsBefore;
    const small = (await metric('kmoe_engine_step_decode_sequences_bucket{le="8"}')) - batchedBefore;
    expect(steps - small).toBeGreaterThan(5);
  });

  it('cancels a stream whose client disconnects and frees its KV cache', async () => {
    const stream = await client.completions.create({
      model: MODEL,
      prompt: 'The',
      max_tokens: 3000,
      temperature: 0,
      stream: true,
      kmoe: { ignore_eos: true },
    } as CompletionCreateParamsStreaming);
    let chunks = 0;
    for await (const _ of stream) {
      if (++chunks === 5) break;
    }
    stream.controller.abort();
    await idle();
    expect(server.stderr()).toMatch(/"cancelled":"client disconnected"/);
  });
});

describe('bad requests get OpenAI-style 400s that name the problem', () => {
  const post = async (path: string, body: string) => {
    const res = await fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    return { status: res.status, body: (await res.json()) as { error: Record<string, unknown> } };
  };
  const base = { model: MODEL, prompt: 'def f():', max_tokens: 4 };
  it('an unknown model is a 404, as OpenAI and vLLM answer it', async () => {
    const r = await post('/v1/completions', JSON.stringify({ ...base, model: 'gpt-4' }));
    expect(r.status).toBe(404);
    expect(r.body.error).toMatchObject({
      type: 'invalid_request_error',
      param: 'model',
      code: 'model_not_found',
    });
    expect(r.body.error['message']).toBe(
      "model 'gpt-4' is not served here; this server serves 'tiny-mixtral'",
    );
  });

  const cases: [string, Record<string, unknown>, RegExp, string | null][] = [
    ['missing model', { prompt: 'x' }, /model is required/, 'model'],
    [
      'prompt longer than the context',
      { ...base, prompt: Array.from({ length: 4096 }, () => 13) },
      /prompt is 4096 tokens; this model's context is 4096 positions/,
      'prompt',
    ],
    ['max_tokens 0', { ...base, max_tokens: 0 }, /max_tokens must be at least 1, got 0/, 'max_tokens'],
    ['fractional max_tokens', { ...base, max_tokens: 2.5 }, /max_tokens must be an integer/, 'max_tokens'],
    [
      'max_tokens past the context',
      { ...base, max_tokens: 5000 },
      /max_tokens is 5000, but the prompt's \d+ tokens leave room for at most \d+/,
      'max_tokens',
    ],
    [
      'temperature out of range',
      { ...base, temperature: 3 },
      /temperature must be in \[0, 2\], got 3/,
      'temperature',
    ],
    ['top_p 0', { ...base, top_p: 0 }, /top_p must be in \(0, 1\], got 0/, 'top_p'],
    ['top_p as a string', { ...base, top_p: 'high' }, /top_p must be a number/, 'top_p'],
    ['seed not an integer', { ...base, seed: 1.5 }, /seed must be an integer/, 'seed'],
    ['negative seed', { ...base, seed: -1 }, /seed must be an integer in \[0, 2\^53\)/, 'seed'],
    ['seed beyond 2^53', { ...base, seed: 2 ** 60 }, /seed must be an integer in \[0, 2\^53\)/, 'seed'],
    [
      'max_tokens beyond 2^53',
      { ...base, max_tokens: 1e300 },
      /max_tokens must be an integer below 2\^53/,
      'max_tokens',
    ],
    ['empty stop string', { ...base, stop: [''] }, /stop strings must not be empty/, 'stop.0'],
    ['n > 1', { ...base, n: 2 }, /does not support n other than 1/, 'n'],
    ['logprobs', { ...base, logprobs: 3 }, /does not support logprobs/, 'logprobs'],
    ['bad routing spec', { ...base, kmoe: { routing: 'topk:9' } }, /topk/, 'kmoe.routing'],
    [
      'unknown routing kind',
      { ...base, kmoe: { routing: 'magic:1' } },
      /unknown policy kind "magic"/,
      'kmoe.routing',
    ],
    [
      'profile the server did not load',
      { ...base, kmoe: { routing: '/etc/passwd.json' } },
      /is not loaded by this server/,
      'kmoe.routing',
    ],
    ['unknown kmoe field', { ...base, kmoe: { turbo: true } }, /Unrecognized key/, 'kmoe'],
    ['several prompts', { ...base, prompt: ['a', 'b'] }, /kmoe takes one prompt per request/, 'prompt'],
    ['empty prompt', { ...base, prompt: '' }, /prompt encodes to no tokens/, 'prompt'],
    [
      'token id out of the vocabulary',
      { ...base, prompt: [1, 99999] },
      /token id 99999 is outside the vocabulary/,
      'prompt',
    ],
  ];

  it.each(cases)('%s', async (_, body, message, param) => {
    const r = await post('/v1/completions', JSON.stringify(body));
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ type: 'invalid_request_error', param });
    expect(r.body.error['message']).toMatch(message);
  });

  it('malformed JSON, a non-object body and an empty body', async () => {
    for (const [body, message] of [
      ['{"model": ', /not valid JSON/],
      ['[1, 2]', /must be a JSON object/],
      ['', /body is empty/],
    ] as const) {
      const r = await post('/v1/completions', body);
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json' });
      expect(r.body.error['message']).toMatch(message);
    }
  });

  it('chat without a chat template in the model', async () => {
    const err = await client.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.code).toBe('chat_template_missing');
    expect(e.message).toMatch(/no chat template.*use \/v1\/completions/);
    // The server's paths stay on the server.
    expect(e.message).not.toContain(ROOT);
  });

  it('the openai client raises them as BadRequestError with code and param', async () => {
    const err = await complete({ prompt: 'x', temperature: -1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('temperature');
  });

  it('unknown paths are 404 and wrong methods 405, with error bodies', async () => {
    const missing = await fetch(`${server.url}/v2/everything`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { message: string } }).error.message).toMatch(/no endpoint/);
    const method = await fetch(`${server.url}/v1/completions`);
    expect(method.status).toBe(405);
    expect(((await method.json()) as { error: { message: string } }).error.message).toMatch(/use POST/);
  });

  // Finite tables pass every check and fail on real hidden states: substitutes that overflow in
  // the routing itself, and means of 1e20 whose priors are finite but make the next RMSNorm divide
  // by infinity (every logit 0: meaningless tokens, not an error, before the engine checked).
  it.each([
    [
      'fails on its own tokens mid-step',
      overflowingSubstituteProfile,
      /the linear substitute of expert \d is not finite for this input/,
    ],
    [
      'overflows the hidden states',
      overflowingMeansProfile,
      /overflowed for sequence .*its logits mean nothing/,
    ],
  ])('a routing that %s ends that request alone, with a 400', async (_, profile, message) => {
    const routing = profile();
    const prompt = greedyCases()[0]!.prompt;
    const alone = await complete({ prompt, max_tokens: 8, temperature: 0 });
    const [bad, native] = await Promise.all([
      post('/v1/completions', JSON.stringify({ ...base, prompt, kmoe: { routing } })),
      complete({ prompt, max_tokens: 8, temperature: 0 }),
    ]);
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ param: 'kmoe.routing', code: 'invalid_routing' });
    expect(bad.body.error['message']).toMatch(message);
    expect(native.choices[0]!.text).toBe(alone.choices[0]!.text);
    // The client's own tables failed, not the server: logged as a warning (pino level 40).
    const records = server
      .stderr()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { level: number; msg: string })
      .filter((r) => /: its (hidden state overflowed|routing failed);/.test(r.msg));
    expect(records.length).toBeGreaterThan(0);
    expect(records.map((r) => r.level)).toEqual(records.map(() => 40));
  });

  it('leaves the server healthy and serving', async () => {
    await idle();
    const res = await complete({ prompt: greedyCases()[0]!.prompt, max_tokens: 4, temperature: 0 });
    expect(res.choices[0]!.text.length).toBeGreaterThan(0);
  });
});

describe('metrics', () => {
  it('exports routing, latency and load metrics in Prometheus text', async () => {
    await complete({ prompt: 'The', max_tokens: 4, temperature: 0, kmoe: { routing: 'topk:1' } });
    // The response ends with its last token; the scheduler frees the sequence on its next turn, so
    // a scrape right after may still count it (gauges are sampled, not transactional).
    await idle();
    const res = await fetch(`${server.url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    const value = parseScrape(text);
    // Every layer routed tokens; the topk:1 request put some in the K=1 bucket.
    for (let layer = 0; layer < 4; layer++) {
      expect(value(`kmoe_routing_selected_k_bucket{layer="${layer}",le="1"}`)).toBeGreaterThan(0);
      expect(value(`kmoe_routing_selected_k_count{layer="${layer}"}`)).toBe(
        value(`kmoe_routing_selected_k_bucket{layer="${layer}",le="+Inf"}`),
      );
      expect(value(`kmoe_router_entropy_nats_count{layer="${layer}"}`)).toBe(
        value(`kmoe_routing_selected_k_count{layer="${layer}"}`),
      );
    }
    let activations = 0;
    for (let e = 0; e < 8; e++)
      activations += value(`kmoe_expert_token_activations_total{layer="0",expert="${e}"}`);
    expect(activations).toBe(value('kmoe_routing_selected_k_sum{layer="0"}'));
    expect(value('kmoe_time_to_first_token_seconds_count')).toBeGreaterThan(10);
    expect(value('kmoe_inter_token_latency_seconds_count')).toBeGreaterThan(100);
    expect(value('kmoe_request_duration_seconds_count{endpoint="completions",status="400"}')).toBeGreaterThan(
      10,
    );
    expect(value('kmoe_sequences_running')).toBe(0);
    expect(value('kmoe_sequences_queued')).toBe(0);
    expect(value('kmoe_engine_sequences')).toBe(0);
    expect(text).toMatch(/^# TYPE kmoe_routing_selected_k histogram$/m);
  });
});
