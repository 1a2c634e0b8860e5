// Errors raised by the report helpers (figures and progress output); the CLI prints their hint.

import { KmoeError } from '../../../shared/errors/kmoe-error.js';

/** A chart spec that cannot be drawn honestly: non-finite data, log axis with values <= 0, ... */
export class ChartSpecError extends KmoeError {}

/** A progress bar used wrongly: negative counts, updates after finish(). */
export class ProgressBarError extends KmoeError {}
