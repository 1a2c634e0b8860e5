// A command line that cannot be run as given (unknown flag, bad value, missing option). Only the
// CLI throws it: the CLI prints the message and one line pointing at the command's --help, exit 2.

import { KmoeError } from '../../shared/errors/kmoe-error.js';

export class UsageError extends KmoeError {}
