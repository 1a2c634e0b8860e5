// Settings of the llama.cpp anchor that the CLI parses: kept apart from llama-cpp-anchor.ts so that
// parsing arguments loads nothing of the anchor.

/** llama.cpp's flash-attention setting: its default 'auto' (on for the CPU backend), or forced. */
export const FLASH_ATTENTION_SETTINGS = ['auto', 'on', 'off'] as const;
export type FlashAttentionSetting = (typeof FLASH_ATTENTION_SETTINGS)[number];
