// `npm run docs:cli`: writes docs/cli.md from the program's help (cli-reference.ts).

import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../shared/runtime/entry-points.js';
import { CLI_REFERENCE_FILE, cliReference } from './cli-reference.js';

writeFileSync(path.join(projectRoot(), CLI_REFERENCE_FILE), cliReference());
process.stdout.write(`wrote ${CLI_REFERENCE_FILE}\n`);
