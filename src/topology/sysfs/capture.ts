// `dmasim capture`: a read-only walk of a live system's PCI sysfs and /proc, written as a .tar.gz in
// the layout the sysfs reader reads (and the oracle snapshots use), under one top folder named after
// the output file. Works as root (full config space: ACS visible) or not (64 bytes: ACS unknown);
// a file that cannot be read is skipped and listed, never fatal.
//
// What is kept, per PCI function: the attributes of drivers/pci/pci-sysfs.c that the reader uses,
// the driver/iommu_group/physfn links (targets as the kernel wrote them), plus
// sys/bus/pci/devices/<BDF> links, sys/kernel/iommu_groups/<n>/devices/<BDF> links,
// sys/devices/system/node/node<N>, proc/{cpuinfo,cmdline,version}.

import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { create } from 'tar';
import { TopologyError } from '../errors.js';
import { createDirSource } from './dir-source.js';
import type { SysfsSource } from './source.js';

/** The per-function attributes copied (those that exist). */
export const CAPTURED_ATTRS = [
  'config',
  'vendor',
  'device',
  'class',
  'revision',
  'subsystem_vendor',
  'subsystem_device',
  'resource',
  'numa_node',
  'current_link_speed',
  'current_link_width',
  'max_link_speed',
  'max_link_width',
  'secondary_bus_number',
  'subordinate_bus_number',
  'sriov_totalvfs',
  'sriov_numvfs',
  'local_cpulist',
] as const;

export const CAPTURED_LINKS = ['driver', 'iommu_group', 'physfn'] as const;

export interface CaptureResult {
  readonly file: string;
  /** The top folder inside the archive. */
  readonly top: string;
  readonly functions: number;
  /** Regular files written. */
  readonly files: number;
  /** Files that exist but could not be read, with the reason (e.g. EACCES without root). */
  readonly skipped: readonly { readonly path: string; readonly reason: string }[];
}

/** Stages files under a private temp folder, mirroring the source's paths. */
class Stage {
  readonly dir: string;
  files = 0;
  readonly skipped: { path: string; reason: string }[] = [];
  private readonly src: SysfsSource;

  constructor(src: SysfsSource, top: string) {
    this.src = src;
    this.dir = join(mkdtempSync(join(tmpdir(), 'dmasim-capture-')), top);
    mkdirSync(this.dir);
  }

  mkdir(rel: string): void {
    mkdirSync(join(this.dir, rel), { recursive: true });
  }

  /** Copy one file if it exists; list it as skipped if it exists but cannot be read. */
  copy(rel: string): void {
    let data: Uint8Array | null;
    try {
      data = this.src.readFile(rel);
    } catch (e) {
      this.skipped.push({ path: rel, reason: e instanceof Error ? e.message : String(e) });
      return;
    }
    if (data === null) return;
    this.mkdir(dirname(rel));
    writeFileSync(join(this.dir, rel), data, { mode: 0o644 });
    this.files++;
  }

  /** Copy a symlink with its target as written, if there is one. */
  link(rel: string): void {
    let target: string | null;
    try {
      target = this.src.readLink(rel);
    } catch (e) {
      this.skipped.push({ path: rel, reason: e instanceof Error ? e.message : String(e) });
      return;
    }
    if (target === null) return;
    this.mkdir(dirname(rel));
    symlinkSync(target, join(this.dir, rel));
  }
}

function stageFunctions(src: SysfsSource, st: Stage, devs: readonly string[]): number {
  // Even a machine with no PCI function keeps the directory: it is what marks a sysfs snapshot.
  st.mkdir('sys/bus/pci/devices');
  let n = 0;
  for (const d of devs) {
    const entry = `sys/bus/pci/devices/${d}`;
    let dir: string;
    try {
      dir = src.realPath(entry);
    } catch (e) {
      st.skipped.push({ path: entry, reason: e instanceof Error ? e.message : String(e) });
      continue;
    }
    st.link(entry);
    st.mkdir(dir);
    for (const a of CAPTURED_ATTRS) st.copy(`${dir}/${a}`);
    for (const l of CAPTURED_LINKS) st.link(`${dir}/${l}`);
    n++;
  }
  return n;
}

function stageSystem(src: SysfsSource, st: Stage): void {
  const groups = src.listDir('sys/kernel/iommu_groups');
  if (groups !== null) st.mkdir('sys/kernel/iommu_groups');
  for (const g of groups ?? []) {
    const base = `sys/kernel/iommu_groups/${g}/devices`;
    st.mkdir(base);
    for (const d of src.listDir(base) ?? []) st.link(`${base}/${d}`);
  }
  for (const n of src.listDir('sys/devices/system/node') ?? []) {
    if (/^node\d+$/.test(n)) st.mkdir(`sys/devices/system/node/${n}`);
  }
  for (const f of ['proc/cpuinfo', 'proc/cmdline', 'proc/version', 'proc/bus/pci/devices']) st.copy(f);
}

/** The top folder name for an output file: its name without the archive extension. */
export const captureTopName = (outFile: string): string =>
  basename(outFile).replace(/\.(tar\.gz|tgz|tar)$/i, '') || 'snapshot';

/**
 * Capture the live system under `root` into the .tar.gz `outFile`. Read-only on `root`; files are
 * staged in a private temp folder that is removed afterwards.
 * @returns what was written and what was skipped.
 * @throws TopologyError when `root` has no sys/bus/pci/devices.
 */
export async function captureSnapshot(root: string, outFile: string): Promise<CaptureResult> {
  const src = createDirSource(root);
  const devs = src.listDir('sys/bus/pci/devices');
  if (devs === null) {
    throw new TopologyError(
      'sys/bus/pci/devices',
      `${root} has no sys/bus/pci/devices: this system shows no PCI devices (or /sys is not mounted); nothing to capture`,
    );
  }
  const top = captureTopName(outFile);
  const st = new Stage(src, top);
  try {
    const functions = stageFunctions(src, st, devs);
    stageSystem(src, st);
    await create({ gzip: true, file: outFile, cwd: dirname(st.dir), portable: true }, [top]);
    return { file: outFile, top, functions, files: st.files, skipped: st.skipped };
  } finally {
    rmSync(dirname(st.dir), { recursive: true, force: true });
  }
}
