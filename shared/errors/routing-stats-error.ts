// Raised when routing statistics are fed a decision that does not fit them (layer out of range,
// K outside 1..E), merged with statistics of another shape, or restored from malformed JSON.

import { KmoeError } from './kmoe-error.js';

export class RoutingStatsError extends KmoeError {}
