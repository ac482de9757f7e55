// `dmasim run SCENARIO`: simulate a scenario (a built-in name or a scenario file) and report it as
// text or one JSON document. Exit codes: 0 when every byte moved was verified and the scenario's
// expectations hold (transfers that fail the way the kernel fails them are part of a good run);
// 1 when a byte is wrong or an expectation does not hold (the command that reproduces the run is
// printed on stderr); 2 for bad input; 3 for a bug in dmasim.

import cliProgress from 'cli-progress';
import { type Command, Option } from 'commander';
import { listDmabufScenarios, resolveDmabufScenario } from '../analysis/run/dmabuf/dmabuf-scenario-file.js';
import { runScenario } from '../analysis/run/runner.js';
import { listBuiltinScenarios, resolveScenario } from '../analysis/run/scenario-file.js';
import { runJson } from '../report/run-json.js';
import { renderRunText } from '../report/run-text.js';
import { runDmabufCommand } from './cmd-run-dmabuf.js';
import { EXIT_OK, UsageError } from './exit.js';
import { loadMachine } from './load-machine.js';

/** A run whose bytes or expectations are wrong. */
export const EXIT_RUN_FAILED = 1;

interface RunOpts {
  machine?: string;
  kernel?: '6.1' | 'newest';
  seed?: string;
  iommu?: 'off' | 'strict' | 'lazy' | 'passthrough';
  json?: boolean;
  color?: boolean;
  progress?: boolean;
}

const quote = (s: string): string => (/^[\w./:@=-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** The command line that reproduces a run exactly (scenario, machine, and every drawn option). */
export function reproduceCommand(
  arg: string,
  o: { machine?: string | undefined; kernel: string; seed: number; iommu: string },
): string {
  const parts = ['dmasim', 'run', quote(arg)];
  if (o.machine !== undefined) parts.push('--machine', quote(o.machine));
  parts.push('--kernel', o.kernel, '--seed', String(o.seed), '--iommu', o.iommu);
  return parts.join(' ');
}

function parseSeed(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff)
    throw new UsageError(`--seed ${s}: want an integer 0..4294967295`);
  return n;
}

function progressBar(enabled: boolean): { update: (done: number, total: number) => void; stop: () => void } {
  if (!enabled) return { update: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: 'simulating [{bar}] {percentage}% {value}/{total} MiB',
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total) {
      if (!started) {
        bar.start(Math.ceil(total / 2 ** 20), 0);
        started = true;
      }
      bar.update(Math.floor(done / 2 ** 20));
    },
    stop: () => started && bar.stop(),
  };
}

export function registerRun(program: Command, setCode: (c: number) => void): void {
  program
    .command('run')
    .description(
      'simulate a scenario (built-in name or scenario file): transfers, paths, links, errors, verification',
    )
    .argument('[scenario]', 'a built-in scenario (omit to list them) or a scenario file (.yaml)')
    .option(
      '-m, --machine <name|file>',
      "run on this machine instead of the scenario's (built-in name or machine file)",
    )
    .addOption(
      new Option('--kernel <version>', "kernel profile (default: the scenario's)").choices(['6.1', 'newest']),
    )
    .option('--seed <n>', "seed of the run (default: the scenario's)")
    .addOption(
      new Option('--iommu <mode>', "IOMMU mode (default: the scenario's)").choices([
        'off',
        'strict',
        'lazy',
        'passthrough',
      ]),
    )
    .option('--json', 'print one JSON document instead of text')
    .option('--no-color', 'no colours in text output')
    .option('--no-progress', 'no progress bar (it is shown only when stderr is a terminal)')
    .action(async (arg: string | undefined, opts: RunOpts) => {
      if (arg === undefined) {
        const list = [...listBuiltinScenarios(), ...listDmabufScenarios()].sort((a, b) =>
          a.name.localeCompare(b.name),
        );
        const w = Math.max(...list.map((s) => s.name.length));
        process.stdout.write(`${list.map((s) => `${s.name.padEnd(w)}  ${s.description}`).join('\n')}\n`);
        setCode(EXIT_OK);
        return;
      }
      // dma-buf scenarios (kind: dmabuf-evict | vfio-revoke) have their own runner.
      const dmabuf = resolveDmabufScenario(arg);
      if (dmabuf !== null) {
        const o = { ...opts, seed: parseSeed(opts.seed) };
        setCode(await runDmabufCommand(arg, dmabuf, o, (x) => reproduceCommand(arg, x)));
        return;
      }
      const sc = resolveScenario(arg);
      if (sc === null) {
        const names = [...listBuiltinScenarios(), ...listDmabufScenarios()].map((s) => s.name).sort();
        throw new UsageError(
          `no built-in scenario "${arg}"; built-in scenarios: ${names.join(', ')} (or give a scenario file path)`,
        );
      }
      const machine = await loadMachine({ machine: opts.machine ?? sc.machineRef });
      const seed = parseSeed(opts.seed);
      const bar = progressBar(opts.progress !== false && process.stderr.isTTY === true && !opts.json);
      const r = runScenario(machine, sc, {
        kernel: opts.kernel,
        seed,
        iommu: opts.iommu,
        onProgress: bar.update,
      });
      bar.stop();
      if (opts.json) process.stdout.write(`${JSON.stringify(runJson(r), null, 2)}\n`);
      else {
        const color = opts.color !== false && process.stdout.isTTY === true && !process.env.NO_COLOR;
        process.stdout.write(`${renderRunText(r, { color })}\n`);
      }
      const good = r.verified && r.expectations.every((x) => x.ok);
      if (!good)
        process.stderr.write(
          `dmasim: the run ${r.verified ? 'did not meet its expectations' : 'moved bytes that do not verify'}; reproduce with:\n  ${reproduceCommand(arg, { machine: opts.machine, kernel: r.kernel, seed: r.seed, iommu: r.iommu })}\n`,
        );
      setCode(good ? EXIT_OK : EXIT_RUN_FAILED);
    });
}
