// Whether a prompt and a number of tokens to generate fit a model's context: one rule and one
// wording for the server (a 400 naming the field) and `kmoe generate` (a usage error).

import { counted } from '../shared/text/counted.js';

export interface ContextProblem {
  /** Which request field is at fault: the prompt itself, or the tokens asked for beyond it. */
  readonly field: 'prompt' | 'maxTokens';
  readonly message: string;
}

/** `maxTokensName`: how the caller spells the limit (`max_tokens`, `--max-tokens`). */
export function contextProblem(
  promptLength: number,
  maxTokens: number,
  context: number,
  maxTokensName: string,
): ContextProblem | undefined {
  if (promptLength >= context) {
    return {
      field: 'prompt',
      message: `the prompt is ${promptLength} tokens; this model's context is ${context} positions, leaving no room to generate`,
    };
  }
  if (promptLength + maxTokens > context) {
    return {
      field: 'maxTokens',
      message: `${maxTokensName} is ${maxTokens}, but the prompt's ${counted(promptLength, 'token')} leave${promptLength === 1 ? 's' : ''} room for at most ${context - promptLength} in this model's context of ${context}`,
    };
  }
  return undefined;
}
