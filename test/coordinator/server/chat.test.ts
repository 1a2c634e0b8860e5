// /v1/chat/completions on a copy of the demo model whose tokenizer_config.json adds the
// Mixtral-Instruct chat template (the shipped model has none): the messages are rendered by the
// template, and the answer equals a completion of the rendered prompt.

import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmoeTokenizer } from '../../../shared/model/tokenizer.js';
import { MODEL_DIR } from '../../helpers/paths.js';
import { type ServeProcess, startServe } from './serve-process.js';

// The chat template of Mixtral-8x7B-Instruct-v0.1.
const MIXTRAL_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}" +
  "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

let dir: string;
let server: ServeProcess;
let client: OpenAI;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kmoe-chat-model-'));
  for (const name of readdirSync(MODEL_DIR)) {
    if (name !== 'tokenizer_config.json') symlinkSync(join(MODEL_DIR, name), join(dir, name));
  }
  const config = JSON.parse(readFileSync(join(MODEL_DIR, 'tokenizer_config.json'), 'utf8')) as object;
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({ ...config, chat_template: MIXTRAL_TEMPLATE }),
  );
  server = await startServe(['--workers', '0', '--served-model-name', 'tiny-chat'], dir);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  expect(await server?.stop()).toBe(0);
  rmSync(dir, { recursive: true, force: true });
});

const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [
  { role: 'user', content: 'Write a function that adds two numbers.' },
  { role: 'assistant', content: 'def add(a, b):\n    return a + b' },
  { role: 'user', content: [{ type: 'text', text: 'Now subtract.' }] },
];

describe('chat completions with a chat template', () => {
  it('renders the conversation with the template and answers like a completion of that prompt', async () => {
    const tokenizer = await KmoeTokenizer.load(dir);
    const rendered = tokenizer.applyChatTemplate([
      { role: 'user', content: 'Write a function that adds two numbers.' },
      { role: 'assistant', content: 'def add(a, b):\n    return a + b' },
      { role: 'user', content: 'Now subtract.' },
    ]);
    expect(rendered).toBe(
      '<s>[INST] Write a function that adds two numbers. [/INST]def add(a, b):\n    return a + b</s>[INST] Now subtract. [/INST]',
    );
    const chat = await client.chat.completions.create({
      model: 'tiny-chat',
      messages,
      max_tokens: 24,
      temperature: 0,
    });
    expect(chat.object).toBe('chat.completion');
    expect(chat.id).toMatch(/^chatcmpl-/);
    expect(chat.choices[0]!.message.role).toBe('assistant');
    expect(chat.usage!.prompt_tokens).toBe(tokenizer.encodeRaw(rendered).length);
    const completion = await client.completions.create({
      model: 'tiny-chat',
      prompt: tokenizer.encodeRaw(rendered),
      max_tokens: 24,
      temperature: 0,
    });
    expect(chat.choices[0]!.message.content).toBe(completion.choices[0]!.text);
    expect(chat.choices[0]!.message.content!.length).toBeGreaterThan(0);
  });

  it('streams the same answer as deltas after a role chunk', async () => {
    const whole = await client.chat.completions.create({
      model: 'tiny-chat',
      messages,
      max_completion_tokens: 16,
      temperature: 0,
    });
    const stream = await client.chat.completions.create({
      model: 'tiny-chat',
      messages,
      max_completion_tokens: 16,
      temperature: 0,
      stream: true,
    });
    const chunks: OpenAI.Chat.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0]!.id)).toBe(true);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(
      whole.choices[0]!.message.content,
    );
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe(whole.choices[0]!.finish_reason);
  });

  it('rejects a conversation the template refuses, with the template message', async () => {
    const err = await client.chat.completions
      .create({
        model: 'tiny-chat',
        messages: [
          { role: 'user', content: 'a' },
          { role: 'user', content: 'b' },
        ],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('messages');
    expect((err as Error).message).toMatch(/Conversation roles must alternate/);
  });

  it('rejects tool messages and tools by name', async () => {
    const bad = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-chat', messages: [{ role: 'tool', content: 'x' }] }),
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(
      /kmoe has no tool messages/,
    );
    const tools = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'tiny-chat',
        messages: [{ role: 'user', content: 'x' }],
        tools: [{ type: 'function', function: { name: 'f' } }],
      }),
    });
    expect(tools.status).toBe(400);
    expect(((await tools.json()) as { error: { message: string } }).error.message).toMatch(
      /does not support tools/,
    );
  });
});
