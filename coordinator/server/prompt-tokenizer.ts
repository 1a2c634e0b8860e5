// Prompt tokenization for the API, on a worker thread of its own: the event loop only checks a
// cheap length bound (text longer than the context could hold, whatever its tokens) and waits.
// The scheduler keeps a main-thread tokenizer for detokenizing generated tokens, which is cheap.

import type { ChatMessage } from '../../shared/model/tokenizer.js';
import { ThreadClient } from '../../shared/runtime/thread-rpc.js';
import { TokenizerBusyError } from './errors.js';

export type PromptTokenizerSchema = {
  init: [{ modelDir: string }, { charsPerTokenBound: number }];
  encode: [string, number[]];
  encodeChat: [ChatMessage[], number[]];
};

export class PromptTokenizer {
  #pending = 0;

  private constructor(
    private readonly thread: ThreadClient<PromptTokenizerSchema>,
    /** Most UTF-16 code units of input text one token can stand for. */
    readonly charsPerTokenBound: number,
    private readonly maxPending: number,
  ) {}

  /**
   * `maxPending`: prompts waiting for (or in) the thread at once; beyond, 429. One thread encodes
   * prompts in turn, and requests waiting here hold no place in the scheduler's queue, so without
   * it one client's long prompts (each refused only after tokenizing) delayed everyone's by
   * seconds per hundred.
   */
  static async start(modelDir: string, maxPending: number): Promise<PromptTokenizer> {
    const thread = ThreadClient.start<PromptTokenizerSchema>(
      'prompt tokenizer',
      import.meta.url,
      './prompt-tokenizer-thread',
    );
    try {
      const { charsPerTokenBound } = await thread.call('init', { modelDir });
      return new PromptTokenizer(thread, charsPerTokenBound, maxPending);
    } catch (err) {
      await thread.terminate();
      throw err;
    }
  }

  /** @throws TokenizerBusyError when maxPending prompts are waiting already */
  encode(text: string): Promise<number[]> {
    return this.#admitted(() => this.thread.call('encode', text));
  }

  /** @throws TokenizerBusyError when maxPending prompts are waiting already */
  encodeChat(messages: ChatMessage[]): Promise<number[]> {
    return this.#admitted(() => this.thread.call('encodeChat', messages));
  }

  async #admitted(call: () => Promise<number[]>): Promise<number[]> {
    if (this.#pending >= this.maxPending) throw new TokenizerBusyError(this.#pending);
    this.#pending++;
    try {
      return await call();
    } finally {
      this.#pending--;
    }
  }

  close(): Promise<void> {
    return this.thread.terminate();
  }
}
