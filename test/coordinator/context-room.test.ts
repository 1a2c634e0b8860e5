// The one context rule the server and `kmoe generate` share: which field is at fault, and a
// message whose counts read right for one token as for many.

import { describe, expect, it } from 'vitest';
import { contextProblem } from '../../coordinator/context-room.js';

describe('contextProblem', () => {
  it('accepts a prompt and a limit that fill the context exactly', () => {
    expect(contextProblem(10, 6, 16, 'max_tokens')).toBeUndefined();
  });

  it('blames the prompt when it leaves no position to generate into', () => {
    expect(contextProblem(16, 1, 16, 'max_tokens')).toEqual({
      field: 'prompt',
      message: "the prompt is 16 tokens; this model's context is 16 positions, leaving no room to generate",
    });
  });

  it('blames the limit, under the name the caller spells it, with the room that is left', () => {
    expect(contextProblem(1, 20, 16, '--max-tokens')).toEqual({
      field: 'maxTokens',
      message:
        "--max-tokens is 20, but the prompt's 1 token leaves room for at most 15 in this model's context of 16",
    });
    expect(contextProblem(3, 20, 16, 'max_tokens')?.message).toBe(
      "max_tokens is 20, but the prompt's 3 tokens leave room for at most 13 in this model's context of 16",
    );
  });
});
