// `dmasim machines`: the built-in machines.

import type { Command } from 'commander';
import { listBuiltinMachines } from '../topology/machine-file/index.js';
import { EXIT_OK } from './exit.js';

export function registerMachines(program: Command, setCode: (c: number) => void): void {
  program
    .command('machines')
    .description('list the built-in machines (use a name with --machine)')
    .action(() => {
      for (const m of listBuiltinMachines()) {
        process.stdout.write(
          `${m.name}${m.isDefault ? ' (default)' : ''}\n  ${m.description.replace(/\s+/g, ' ').trim()}\n`,
        );
      }
      setCode(EXIT_OK);
    });
}
