// Errors of the MoE seam.

import { type ErrorDetails, KmoeError } from '../../shared/errors/kmoe-error.js';
import type { RoutingInputError } from '../../shared/routing/errors.js';

/** A layer plan asks for a gate or expert layout this runtime does not compute yet. */
export class UnsupportedMoePlanError extends KmoeError {
  constructor(layer: number, what: string) {
    super(`MoE layer ${layer}: ${what} is not supported yet`, {
      details: { layer, what },
      hint: 'supported: softmax or sigmoid gates, selection bias (sigmoid only), groups, shared experts, routed scaling',
    });
  }
}

/**
 * What an ExpertBackend throws when it cannot compute some experts of an assignment right now (no
 * live worker holds them). The seam's contract: rows that need none of `missing` could still be
 * computed, so the caller may fail only the sequences that need them (MissingExpertsInBatchError).
 */
export class MissingExpertsError extends KmoeError {
  /** The experts that cannot be computed, ascending. */
  readonly missing: readonly number[];

  constructor(
    message: string,
    options: {
      readonly missing: readonly number[];
      readonly hint?: string;
      readonly code?: string;
      readonly cause?: unknown;
      readonly details?: ErrorDetails;
    },
  ) {
    const { missing, details, ...rest } = options;
    super(message, { ...rest, details: { ...details, missing: [...missing] } });
    this.missing = missing;
  }
}

/** Which batch item (RoutedSpan index) needs which of the missing experts. */
export interface SpanNeed {
  readonly span: number;
  readonly missing: readonly number[];
}

/**
 * A MoE layer's backend could not compute `missing`, and `needs` are the batch items (RoutedSpan
 * indices) routed to them. The engine fails those sequences alone and recomputes the step for the
 * rest. To anyone else it is the backend's error: same message and code.
 */
export class MissingExpertsInBatchError extends MissingExpertsError {
  constructor(
    readonly layer: number,
    readonly needs: readonly SpanNeed[],
    cause: MissingExpertsError,
  ) {
    super(cause.message, {
      missing: cause.missing,
      code: cause.code,
      cause,
      details: { layer, spans: needs.map((n) => n.span) },
      ...(cause.hint === undefined ? {} : { hint: cause.hint }),
    });
  }
}

/**
 * A routing policy refused the input of some batch items (RoutedSpan indices), e.g. a profile's
 * linear substitutes overflowed on one of their tokens. Like lost experts, the engine fails those
 * items alone and recomputes the step for the rest; to anyone else it is the policy's error.
 */
export class RoutingFailedInBatchError extends KmoeError {
  constructor(
    readonly layer: number,
    readonly spans: readonly number[],
    override readonly cause: RoutingInputError,
  ) {
    super(cause.message, {
      code: cause.code,
      cause,
      details: { layer, spans: [...spans] },
      ...(cause.hint === undefined ? {} : { hint: cause.hint }),
    });
  }
}
