#!/usr/bin/env node
// The `dmasim` executable: run the CLI and exit with its code.

import { outcomeOf } from './exit.js';
import { main } from './main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const o = outcomeOf(e);
    process.stderr.write(`${o.message}\n`);
    process.exitCode = o.code;
  },
);
