// The sysfs readers' entry points: open a snapshot (a directory or an archive) or the live system and
// get a Machine. The CLI calls these; everything else in this folder is their machinery.

import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Machine } from '../../hw/pci.js';
import { TopologyError } from '../errors.js';
import { openArchive } from './archive-source.js';
import { createDirSource } from './dir-source.js';
import { readSysfsMachine } from './read-sysfs.js';
import type { SysfsSource } from './source.js';

export { type ArchiveFormat, detectFormat, openArchive } from './archive-source.js';
export { type CaptureResult, captureSnapshot } from './capture.js';
export { parseProcCpuinfo } from './cpuinfo.js';
export { createDirSource } from './dir-source.js';
export { createMemorySource, type MemEntry, memorySourceFromEntries } from './memory-source.js';
export { type ReadSysfsOptions, readSysfsMachine } from './read-sysfs.js';
export type { SysfsSource } from './source.js';

const ARCHIVE_EXT = /\.(tar\.gz|tgz|tar\.bz2|tbz2?|tar)$/i;

/** The layout root of a snapshot directory: itself when it holds sys/, else its only subfolder. */
function dirLayout(path: string): { src: SysfsSource; name: string } {
  const outer = createDirSource(path);
  if (outer.exists('sys') || outer.exists('proc')) return { src: outer, name: basename(path) };
  const subs = (outer.listDir('') ?? []).filter((n) => !n.startsWith('.'));
  const only = subs[0];
  if (subs.length === 1 && only !== undefined && outer.listDir(only) !== null) {
    return { src: createDirSource(`${path}/${only}`, `${path}/${only}`), name: only };
  }
  return { src: outer, name: basename(path) };
}

/**
 * Read a sysfs snapshot: a directory laid out like `/` (sys/, proc/ at its root or in its only
 * subfolder) or an archive (.tar, .tar.gz/.tgz, .tar.bz2; told by content, not name) of one.
 * @returns the machine, named after the snapshot's folder (or the file name), source kind 'snapshot'.
 * @throws TopologyError when the path is missing, the format is unknown, the archive is unsafe or
 *   damaged, or the content is not a sysfs tree (see readSysfsMachine).
 */
export async function openSnapshot(path: string): Promise<Machine> {
  const st = await stat(path).catch((e: unknown) => {
    throw new TopologyError(
      path,
      `${path} does not exist or cannot be read (${(e as { code?: string }).code ?? e}); give a snapshot directory or archive`,
      { cause: e },
    );
  });
  if (st.isDirectory()) {
    const { src, name } = dirLayout(path);
    return readSysfsMachine(src, { name, path, kind: 'snapshot' });
  }
  const bytes = await readFile(path).catch((e: unknown) => {
    throw new TopologyError(path, `${path} cannot be read (${(e as { code?: string }).code ?? e})`, {
      cause: e,
    });
  });
  const { source, top } = openArchive(bytes, path);
  const name = top ?? basename(path).replace(ARCHIVE_EXT, '');
  return readSysfsMachine(source, { name, path, kind: 'snapshot' });
}

/**
 * Read the running system's PCI tree and CPU (works without root: config is then 64 bytes per
 * function, and ACS and port types are reported unknown).
 * @param root where the live system's / is mounted (tests and containers may point elsewhere).
 * @returns the machine, named after the host name, source kind 'live'.
 * @throws TopologyError when `root` has no sys/bus/pci/devices (no PCI, or /sys not mounted).
 */
export async function readLiveMachine(root = '/'): Promise<Machine> {
  const src = createDirSource(root);
  const name = src.readText('proc/sys/kernel/hostname')?.trim() || 'live';
  return readSysfsMachine(src, { name, path: root, kind: 'live' });
}
