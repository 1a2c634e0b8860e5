// Errors raised by the report helpers (figures and progress output). They live next to the
// helpers because shared/report has no other dependents; both carry a hint for the CLI.

import { KmoeError } from '../errors/kmoe-error.js';

/** A chart spec that cannot be drawn honestly: non-finite data, log axis with values <= 0, ... */
export class ChartSpecError extends KmoeError {}

/** A progress bar used wrongly: negative counts, updates after finish(). */
export class ProgressBarError extends KmoeError {}
