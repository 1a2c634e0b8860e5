// Prompt tokenization for the API, on a worker thread of its own: the event loop only checks a
// cheap length bound (text longer than the context could hold, whatever its tokens) and waits.
// The scheduler keeps a main-thread tokenizer for detokenizing generated tokens, which is cheap.

import type { ChatMessage } from '../../shared/model/tokenizer.js';
import { ThreadClient } from '../../shared/runtime/thread-rpc.js';

export type PromptTokenizerSchema = {
  init: [{ modelDir: string }, { charsPerTokenBound: number }];
  encode: [string, number[]];
  encodeChat: [ChatMessage[], number[]];
};

export class PromptTokenizer {
  private constructor(
    private readonly thread: ThreadClient<PromptTokenizerSchema>,
    /** Most UTF-16 code units of input text one token can stand for. */
    readonly charsPerTokenBound: number,
  ) {}

  static async start(modelDir: string): Promise<PromptTokenizer> {
    const thread = ThreadClient.start<PromptTokenizerSchema>(
      'prompt tokenizer',
      import.meta.url,
      './prompt-tokenizer-thread',
    );
    try {
      const { charsPerTokenBound } = await thread.call('init', { modelDir });
      return new PromptTokenizer(thread, charsPerTokenBound);
    } catch (err) {
      await thread.terminate();
      throw err;
    }
  }

  encode(text: string): Promise<number[]> {
    return this.thread.call('encode', text);
  }

  encodeChat(messages: ChatMessage[]): Promise<number[]> {
    return this.thread.call('encodeChat', messages);
  }

  close(): Promise<void> {
    return this.thread.terminate();
  }
}
