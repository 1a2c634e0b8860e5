// Errors of the scale tools: a synthetic checkpoint that cannot be written, a memory plan whose
// inputs are inconsistent. Both name the file or the figure that is wrong.

import { KmoeError } from '../../shared/errors/kmoe-error.js';

export class SynthError extends KmoeError {}

export class PlanError extends KmoeError {}
