// Errors of the cluster registry: Redis unreachable or refusing, a record that does not parse.

import { KmoeError, type KmoeErrorOptions } from '../errors/kmoe-error.js';

export class RegistryError extends KmoeError {
  constructor(message: string, options: Omit<KmoeErrorOptions, 'code'> = {}) {
    super(message, { ...options, code: 'registry' });
  }
}
