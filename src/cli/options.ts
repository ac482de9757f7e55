// Options shared by several commands: where the machine comes from, and which kernel to model.

import { Option } from 'commander';

export const kernelOption = (): Option =>
  new Option('--kernel <version>', 'kernel profile to model').choices(['6.1', 'newest']).default('newest');

export interface SourceOptions {
  readonly input?: string | undefined;
  readonly sysfs?: string | undefined;
  readonly machine?: string | undefined;
}

export const sourceOptions = (): Option[] => [
  new Option(
    '-i, --input <path>',
    'a snapshot (directory, .tar, .tar.gz, .tar.bz2), an hwloc or NCCL XML file, or a machine file (.yaml)',
  ),
  new Option('--sysfs <root>', 'read a live system rooted at <root> (e.g. /)'),
  new Option('-m, --machine <name|file>', 'a built-in machine (see `dmasim machines`) or a machine file'),
];
