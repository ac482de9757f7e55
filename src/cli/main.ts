// dmasim's command line. The only layer that touches argv, stdout, the filesystem and exit codes.

import { Command, CommanderError } from 'commander';
import { registerCapture } from './cmd-capture.js';
import { registerMachines } from './cmd-machines.js';
import { registerP2p } from './cmd-p2p.js';
import { registerRun } from './cmd-run.js';
import { EXIT_BAD_INPUT, EXIT_OK, outcomeOf } from './exit.js';

export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command()
    .name('dmasim')
    .description('Linux DMA-mapping, PCI P2PDMA and dma-buf as an executable model, applied to real machines')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s), writeOut: (s) => process.stdout.write(s) })
    .showHelpAfterError('(run dmasim --help for usage)');
  let code = EXIT_OK;
  const setCode = (c: number): void => {
    code = c;
  };
  registerP2p(program, setCode);
  registerCapture(program, setCode);
  registerMachines(program, setCode);
  registerRun(program, setCode);
  try {
    await program.parseAsync(argv as string[], { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit 0; argument errors are bad input (commander already printed them).
      return e.exitCode === 0 ? EXIT_OK : EXIT_BAD_INPUT;
    }
    const o = outcomeOf(e);
    process.stderr.write(`${o.message}\n`);
    return o.code;
  }
  return code;
}
