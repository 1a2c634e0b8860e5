// Errors of the GGUF reader and writer: a file that is not (or not the supported subset of) GGUF v3,
// or a checkpoint that cannot be written as llama.cpp's `llama` architecture.

import { KmoeError } from '../../../shared/errors/kmoe-error.js';

export class GgufError extends KmoeError {}
