// Errors of data-driven calibration: what cannot be calibrated and why.

import { KmoeError } from '../../shared/errors/kmoe-error.js';

/** The model or the request is outside what the calibration methods support. */
export class CalibrationError extends KmoeError {}
