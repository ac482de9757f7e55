// Turn the source options of a command into a Machine: a snapshot, a live system, an XML dump, a
// machine file or a built-in machine. With no option: the live machine if /sys/bus/pci exists, else
// the built-in default.

import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import type { Machine } from '../hw/pci.js';
import { TopologyError } from '../topology/errors.js';
import { listBuiltinMachines, loadBuiltinMachine, loadMachineFile } from '../topology/machine-file/index.js';
import { openSnapshot, readLiveMachine } from '../topology/sysfs/index.js';
import { readHwlocXml } from '../topology/xml/hwloc-xml.js';
import { readNcclXml } from '../topology/xml/nccl-xml.js';
import { detectXmlKind } from '../topology/xml/xml-common.js';
import { UsageError } from './exit.js';
import type { SourceOptions } from './options.js';

function head(path: string, n: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(n);
    const got = readSync(fd, b, 0, n, 0);
    return b.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

const isArchive = (b: Buffer): boolean =>
  (b[0] === 0x1f && b[1] === 0x8b) ||
  b.subarray(0, 3).toString('latin1') === 'BZh' ||
  b.subarray(257, 262).toString('latin1') === 'ustar';

/** Read any supported input file or directory by looking at what it is, not only at its name. */
export async function loadInput(path: string): Promise<Machine> {
  if (!existsSync(path)) throw new TopologyError(path, 'no such file or directory');
  if (statSync(path).isDirectory()) return openSnapshot(path);
  const b = head(path, 512);
  if (isArchive(b)) return openSnapshot(path);
  const text = b.toString('utf8').trimStart();
  if (text.startsWith('<')) {
    const full = readFileSync(path, 'utf8');
    const kind = detectXmlKind(full);
    if (kind === 'hwloc') return readHwlocXml(full, path);
    if (kind === 'nccl') return readNcclXml(full, path);
    throw new TopologyError(
      path,
      'an XML file that is neither an hwloc topology (<topology>) nor an NCCL topology (<system>)',
    );
  }
  if (/\.ya?ml$/i.test(path) || /^[a-zA-Z_#-]/.test(text)) return loadMachineFile(path);
  throw new TopologyError(
    path,
    'unknown input format: expected a sysfs snapshot (directory or .tar/.tar.gz/.tar.bz2), an hwloc or NCCL XML file, or a machine file (.yaml)',
  );
}

/** The machine a command should work on. */
export async function loadMachine(opts: SourceOptions): Promise<Machine> {
  const given = [opts.input, opts.sysfs, opts.machine].filter((x) => x !== undefined);
  if (given.length > 1) throw new UsageError('give only one of --input, --sysfs and --machine');
  if (opts.input !== undefined) return loadInput(opts.input);
  if (opts.sysfs !== undefined) return readLiveMachine(opts.sysfs);
  if (opts.machine !== undefined) {
    const m = opts.machine;
    if (/[/\\]|\.ya?ml$/i.test(m) || existsSync(m)) return loadMachineFile(m);
    const names = listBuiltinMachines();
    if (m !== 'default' && !names.some((x) => x.name === m)) {
      throw new UsageError(
        `no built-in machine "${m}"; built-in machines: ${names.map((x) => x.name).join(', ')} (or give a machine file path)`,
      );
    }
    return loadBuiltinMachine(m);
  }
  if (existsSync('/sys/bus/pci/devices')) return readLiveMachine('/');
  return loadBuiltinMachine('default');
}
