// Errors of the evaluation programs: a routing trace file that cannot be read as one.

import { KmoeError } from '../../shared/errors/kmoe-error.js';

/** code `routing_trace`: the file is not a kmoe routing trace, or is damaged (names file and line). */
export class RoutingTraceError extends KmoeError {}
