// Errors of the model-family layer: a model_type no family implements, a config.json object that
// breaks a family's schema, a config handed to a family that did not parse it.

import { KmoeError } from '../errors/kmoe-error.js';

/** No registered family loads this config.json `model_type`. Lists the ones that exist. */
export class UnsupportedModelTypeError extends KmoeError {
  constructor(
    readonly modelType: string,
    readonly supported: readonly string[],
  ) {
    super(
      `model_type ${JSON.stringify(modelType)} is not supported (supported model types: ${quoteList(supported)})`,
      {
        hint: 'kmoe loads Hugging Face checkpoints of the supported families; see shared/families/README.md to add one',
        details: { modelType, supported },
      },
    );
  }
}

/**
 * A config.json object breaks a family's schema or consistency rules. Knows the field, not the
 * file: the config.json reader (shared/model/config.ts) turns it into a ModelConfigError naming both.
 */
export class FamilyConfigError extends KmoeError {
  constructor(
    message: string,
    /** The config.json key at fault, in the file's own snake_case spelling, if one is. */
    readonly field: string | undefined,
  ) {
    super(message, { details: field === undefined ? {} : { field } });
  }
}

/** A family was asked about a config another family parsed (a wiring bug, not a user error). */
export class FamilyMismatchError extends KmoeError {
  constructor(family: string, modelType: string) {
    super(`the ${family} family was given a config of model_type ${JSON.stringify(modelType)}`, {
      details: { family, modelType },
    });
  }
}

/** `"a", "b"`: how error messages list model types. */
export function quoteList(items: readonly string[]): string {
  return items.map((t) => JSON.stringify(t)).join(', ');
}

/**
 * A valid config asks for something the family's graphs do not compute yet (e.g. a RoPE scaling):
 * kmoe can read and size the model but not run it. Names the config.json field.
 */
export class FamilyFeatureError extends KmoeError {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message, { details: { field } });
  }
}
