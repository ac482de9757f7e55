// `dmasim p2p`: the P2P report of a machine (text or JSON), or one pair explained.

import { type Command, Option } from 'commander';
import { parseDeviceFilter } from '../analysis/device-class.js';
import { analyzeP2p } from '../analysis/p2p-analysis.js';
import { explainPair } from '../analysis/p2p-explain.js';
import { prepareTopoClass } from '../analysis/topo-class.js';
import { findFunction } from '../hw/machine-builder.js';
import type { KernelVersion } from '../kernel/profile.js';
import { p2pJsonChunks } from '../report/p2p-json.js';
import { renderP2pText } from '../report/p2p-text.js';
import { EXIT_OK, UsageError } from './exit.js';
import { loadMachine } from './load-machine.js';
import { kernelOption, type SourceOptions, sourceOptions } from './options.js';
import { writeChunks } from './output.js';

interface P2pOptions extends SourceOptions {
  kernel: KernelVersion;
  json?: boolean;
  filter?: string;
  explain?: string[];
  acsUnknown: 'assume-off' | 'assume-on';
  color?: boolean;
}

export function registerP2p(program: Command, setCode: (c: number) => void): void {
  const cmd = program
    .command('p2p')
    .description(
      'for every pair of PCI endpoints: can P2P DMA work, by which path, at what distance, why, and the fix',
    )
    .addOption(kernelOption())
    .option('--json', 'print one JSON document instead of text')
    .option(
      '-f, --filter <list>',
      'only these endpoints: kinds (gpu,nvme,nic,ib,storage,accel,...) and/or BDF prefixes',
    )
    .option('--explain <bdf...>', 'explain the kernel walk for one pair: --explain PROVIDER CLIENT')
    .addOption(
      new Option('--acs-unknown <policy>', 'how to treat ACS state that was not visible')
        .choices(['assume-off', 'assume-on'])
        .default('assume-off'),
    )
    .option('--no-color', 'no colours in text output');
  for (const o of sourceOptions()) cmd.addOption(o);
  cmd.action(async (opts: P2pOptions) => {
    const machine = await loadMachine(opts);
    let filter: ReturnType<typeof parseDeviceFilter>;
    try {
      filter = parseDeviceFilter(opts.filter);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const analysis = analyzeP2p(machine, { version: opts.kernel, filter, acsUnknown: opts.acsUnknown });
    if (opts.explain) {
      if (opts.explain.length !== 2)
        throw new UsageError('--explain takes two PCI addresses: PROVIDER CLIENT');
      const [p, c] = opts.explain.map((b) => {
        const f = findFunction(machine, b);
        if (!f) throw new UsageError(`${b}: no such PCI function in ${machine.name}`);
        return f;
      });
      const ex = explainPair(analysis.cc, p!, c!);
      if (opts.json) process.stdout.write(`${JSON.stringify(ex, null, 2)}\n`);
      else
        process.stdout.write(
          `${ex.steps.join('\n')}\n${ex.kernelLog.length ? `kernel log (verbose check):\n${ex.kernelLog.map((l) => `  ${l}`).join('\n')}\n` : ''}`,
        );
      setCode(EXIT_OK);
      return;
    }
    const cls = prepareTopoClass(machine);
    if (opts.json) await writeChunks(p2pJsonChunks(analysis, cls));
    else {
      const color = opts.color !== false && process.stdout.isTTY === true && !process.env.NO_COLOR;
      process.stdout.write(`${renderP2pText(analysis, { color, topoClass: cls })}\n`);
    }
    setCode(EXIT_OK);
  });
}
