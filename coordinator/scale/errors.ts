// Errors of the scale tools: a synthetic checkpoint that cannot be written, a memory plan whose
// inputs are inconsistent, an expert benchmark asked for a tensor it does not synthesize. Each
// names the file or the figure that is wrong.

import { KmoeError } from '../../shared/errors/kmoe-error.js';

/** code `synth` */
export class SynthError extends KmoeError {}

/** code `plan` */
export class PlanError extends KmoeError {}

/** code `expert_bench` */
export class ExpertBenchError extends KmoeError {}
