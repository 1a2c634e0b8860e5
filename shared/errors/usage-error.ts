// A command line that cannot be run as given: the CLI prints the message and the command's usage.

import { KmoeError } from './kmoe-error.js';

export class UsageError extends KmoeError {}
