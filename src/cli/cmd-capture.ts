// `dmasim capture -o FILE.tar.gz`: snapshot this machine's PCI world in the format `--input` reads.

import type { Command } from 'commander';
import { captureSnapshot } from '../topology/sysfs/index.js';
import { EXIT_OK, UsageError } from './exit.js';

export function registerCapture(program: Command, setCode: (c: number) => void): void {
  program
    .command('capture')
    .description(
      'write a snapshot of the live /sys PCI tree, IOMMU groups and /proc/{cpuinfo,cmdline,version} to a .tar.gz (read-only; as root the full config space is kept)',
    )
    .requiredOption('-o, --output <file>', 'the .tar.gz to write')
    .option('--sysfs <root>', 'the live system root', '/')
    .action(async (opts: { output: string; sysfs: string }) => {
      if (!/\.(tar\.gz|tgz)$/.test(opts.output))
        throw new UsageError(`${opts.output}: the output must end in .tar.gz or .tgz`);
      const r = await captureSnapshot(opts.sysfs, opts.output);
      process.stdout.write(
        `wrote ${r.file}: ${r.functions} PCI functions, ${r.files} files under ${r.top}/\n`,
      );
      if (r.skipped.length) {
        process.stdout.write(
          `${r.skipped.length} file(s) could not be read and were left out (run as root to include them), e.g. ${r.skipped
            .slice(0, 3)
            .map((s) => `${s.path} (${s.reason})`)
            .join(', ')}\n`,
        );
      }
      setCode(EXIT_OK);
    });
}
