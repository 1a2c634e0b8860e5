// Errors of the MoE seam.

import { KmoeError } from '../../shared/errors/kmoe-error.js';

/** A layer plan asks for a gate or expert layout this runtime does not compute yet. */
export class UnsupportedMoePlanError extends KmoeError {
  constructor(layer: number, what: string) {
    super(`MoE layer ${layer}: ${what} is not supported yet`, {
      details: { layer, what },
      hint: 'supported: softmax or sigmoid gates, selection bias (sigmoid only), groups, shared experts, routed scaling',
    });
  }
}
