// The tensor types the GGUF writer can produce, apart from the writer so that the CLI can list them
// without loading checkpoint code.

export const GGUF_OUT_TYPES = ['f32', 'bf16', 'f16', 'q8_0'] as const;
export type GgufOutType = (typeof GGUF_OUT_TYPES)[number];
