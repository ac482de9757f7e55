// `dmasim run` for the dma-buf scenarios (kind: dmabuf-evict | vfio-revoke): load the machine, run, print
// text or JSON, set the exit code (0 verified and every expectation met, 1 otherwise with the command
// that reproduces the run on stderr). Called by cmd-run.ts when the scenario is of one of these kinds.

import { dmabufRunGood, runDmabufScenario } from '../analysis/run/dmabuf/dmabuf-run.js';
import type { DmabufScenario } from '../analysis/run/dmabuf/dmabuf-scenario-file.js';
import { dmabufRunJson, renderDmabufRunText } from '../report/dmabuf-run.js';
import { EXIT_OK } from './exit.js';
import { loadMachine } from './load-machine.js';

export interface DmabufRunCliOptions {
  readonly machine?: string | undefined;
  readonly kernel?: '6.1' | 'newest' | undefined;
  readonly seed?: number | undefined;
  readonly iommu?: 'off' | 'strict' | 'lazy' | 'passthrough' | undefined;
  readonly json?: boolean | undefined;
  readonly color?: boolean | undefined;
}

/** Run `sc` (named `arg` on the command line) and print it. @returns the exit code. */
export async function runDmabufCommand(
  arg: string,
  sc: DmabufScenario,
  opts: DmabufRunCliOptions,
  reproduce: (o: { machine?: string | undefined; kernel: string; seed: number; iommu: string }) => string,
): Promise<number> {
  const machine = await loadMachine({ machine: opts.machine ?? sc.machineRef });
  const r = runDmabufScenario(machine, sc, { kernel: opts.kernel, seed: opts.seed, iommu: opts.iommu });
  if (opts.json) process.stdout.write(`${JSON.stringify(dmabufRunJson(r), null, 2)}\n`);
  else {
    const color = opts.color !== false && process.stdout.isTTY === true && !process.env.NO_COLOR;
    process.stdout.write(`${renderDmabufRunText(r, { color })}\n`);
  }
  const good = dmabufRunGood(r);
  if (!good)
    process.stderr.write(
      `dmasim: the run ${r.verified ? 'did not meet its expectations' : 'did not verify'}; reproduce with:\n  ${reproduce({ machine: opts.machine, kernel: r.kernel, seed: r.seed, iommu: r.iommu })}\n`,
    );
  void arg;
  return good ? EXIT_OK : 1;
}
