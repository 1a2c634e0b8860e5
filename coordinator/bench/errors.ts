// Errors of the benchmarks: a benchmark asked for something the model or the machine cannot give.

import { KmoeError } from '../../shared/errors/kmoe-error.js';

export class BenchConfigError extends KmoeError {}
