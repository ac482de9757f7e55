// Turn a sysfs tree (live, a snapshot directory, or an archive) into a Machine, the way the kernel
// exposes its PCI enumeration (drivers/pci/probe.c, pci-sysfs.c) and the way lspci and hwloc read it
// back. The hierarchy comes from device paths, not from bus numbers:
//
//   sys/bus/pci/devices/0000:03:00.0 -> ../../../devices/pci0000:00/0000:00:02.0/0000:01:00.0/0000:02:00.0/0000:03:00.0
//                                                       |           |            |            |            `-- the function
//                                                       |           |            |            `-- its bridge (dev->bus->self)
//                                                       |           `-- root port  ...
//                                                       `-- host bridge "pci<domain>:<root bus>" (domain may have 8 digits)
//
// A function whose parent directory is a host bridge sits on a root bus (no upstream bridge); any
// other parent is the bridge above it. /proc gives the CPU (cpuinfo), the command line and release.

import { parseBdf } from '../../hw/bdf.js';
import {
  buildMachine,
  type HostBridgeSpec,
  MachineBuildError,
  type ParentRef,
} from '../../hw/machine-builder.js';
import type { Machine, MachineSourceKind } from '../../hw/pci.js';
import { TopologyError } from '../errors.js';
import { parseProcCpuinfo } from './cpuinfo.js';
import { type ConfigSeen, type FunctionRead, readFunction } from './read-function.js';
import { baseName, dirName, type SysfsSource } from './source.js';

export interface ReadSysfsOptions {
  /** Machine name for reports (a hostname, a snapshot's folder name). */
  readonly name: string;
  /** Where it came from (a path), recorded in `Machine.source`. */
  readonly path: string;
  readonly kind: MachineSourceKind;
}

const DEVICES = 'sys/bus/pci/devices';
const HOST_BRIDGE_RE = /^pci([0-9a-f]{4,8}):([0-9a-f]{2})$/i;

interface Located {
  readonly name: string;
  readonly dir: string;
  readonly parent: ParentRef;
}

/** The parent of a function from its device directory: a host bridge or the bridge above it. */
function parentOf(src: SysfsSource, name: string, dir: string): ParentRef {
  const up = baseName(dirName(dir));
  if (HOST_BRIDGE_RE.test(up)) return { kind: 'host', hostBridge: up };
  if (parseBdf(up) !== null) return { kind: 'bridge', name: up };
  throw new TopologyError(
    dir,
    `${src.label}: the function ${name} sits in ${dirName(dir)}, which is neither a host bridge (pciDDDD:BB) nor a PCI bridge; the snapshot's device tree is not a PCI hierarchy`,
  );
}

/**
 * Resolve each sys/bus/pci/devices entry to its device directory and parent. A bridge that is on a
 * listed function's path but missing from the list (pruned captures) is read from its directory.
 */
function locateFunctions(src: SysfsSource, entries: readonly string[], notes: string[]): Located[] {
  const out = new Map<string, Located>();
  for (const e of entries) {
    if (parseBdf(e) === null) {
      notes.push(`${DEVICES}/${e} is not named like a PCI function (dddd:bb:dd.f); it is ignored`);
      continue;
    }
    const dir = src.realPath(`${DEVICES}/${e}`);
    if (baseName(dir) !== e) {
      throw new TopologyError(
        `${DEVICES}/${e}`,
        `${src.label}: ${DEVICES}/${e} leads to ${dir}, a directory of another name; the snapshot is inconsistent: re-capture it`,
      );
    }
    out.set(e, { name: e, dir, parent: parentOf(src, e, dir) });
  }
  for (const l of [...out.values()]) {
    let dir = dirName(l.dir);
    for (let name = baseName(dir); parseBdf(name) !== null && !out.has(name); name = baseName(dir)) {
      notes.push(`${name} is not in ${DEVICES} but is a bridge above ${l.name}; it was read from ${dir}`);
      out.set(name, { name, dir, parent: parentOf(src, name, dir) });
      dir = dirName(dir);
    }
  }
  return [...out.values()];
}

/** Host bridges: the pciDDDD:BB directories that hold functions, numa node from their first function. */
function hostBridges(reads: readonly FunctionRead[]): HostBridgeSpec[] {
  const seen = new Map<string, HostBridgeSpec>();
  for (const { spec } of reads) {
    if (spec.parent.kind !== 'host' || seen.has(spec.parent.hostBridge)) continue;
    const m = HOST_BRIDGE_RE.exec(spec.parent.hostBridge)!;
    seen.set(spec.parent.hostBridge, {
      name: spec.parent.hostBridge,
      domain: Number.parseInt(m[1]!, 16),
      rootBus: Number.parseInt(m[2]!, 16),
      numaNode: spec.numaNode ?? null,
    });
  }
  return [...seen.values()];
}

/** The notes that summarise how much config space was visible. */
function configNotes(reads: readonly FunctionRead[]): string[] {
  const count = (s: ConfigSeen): number => reads.filter((r) => r.configSeen === s).length;
  const fn = (n: number): string => (n === 1 ? '1 function has' : `${n} functions have`);
  const notes: string[] = [];
  // A 64-byte config still shows the capability-list bit: without it the function is conventional
  // PCI and decodeConfig knows it has no ACS, so only the others are unknown.
  const unpriv = reads.filter((r) => r.configSeen === 'unpriv' && r.spec.acs.state === 'unknown').length;
  if (unpriv > 0) {
    notes.push(`${fn(unpriv)} 64-byte config (read without root): ACS and PCIe port types are unknown`);
  }
  const std = reads.filter(
    (r) => r.configSeen === 'std' && r.spec.portType !== 'none' && r.spec.acs.state === 'unknown',
  ).length;
  if (std > 0) {
    notes.push(`${fn(std)} a PCIe capability but only 256 bytes of config: ACS and SR-IOV are unknown`);
  }
  const absent = count('absent');
  if (absent > 0) {
    notes.push(
      `${fn(absent)} no config file: built from vendor/device/class; ACS and PCIe port types are unknown`,
    );
  }
  return notes;
}

/** /proc: cpu, command line, kernel release. */
function readProc(src: SysfsSource, notes: string[]) {
  const cpuText = src.readText('proc/cpuinfo');
  let cpu = null;
  if (cpuText === null) {
    notes.push(
      'proc/cpuinfo is not in the snapshot: the CPU is unknown (P2PDMA through a host bridge depends on it)',
    );
  } else {
    const r = parseProcCpuinfo(cpuText);
    cpu = r.cpu;
    if (r.note) notes.push(r.note);
  }
  const cmdline = src.readText('proc/cmdline')?.trim() ?? null;
  if (cmdline === null)
    notes.push('proc/cmdline is not in the snapshot: kernel parameters (pci=, iommu=) are unknown');
  const version = src.readText('proc/version');
  const release = version ? (/^Linux version (\S+)/.exec(version)?.[1] ?? null) : null;
  const kernelRelease = release ?? src.readText('proc/sys/kernel/osrelease')?.trim() ?? null;
  return { cpu, cmdline, kernelRelease };
}

/** IOMMU: groups exist -> true; the directory exists but is empty -> false; no directory -> unknown. */
function readIommu(src: SysfsSource, notes: string[]): boolean | null {
  const groups = src.listDir('sys/kernel/iommu_groups');
  if (groups === null) {
    notes.push('sys/kernel/iommu_groups is not in the snapshot: whether an IOMMU translates DMA is unknown');
    return null;
  }
  return groups.length > 0;
}

function readNumaNodes(src: SysfsSource): number | null {
  const n = (src.listDir('sys/devices/system/node') ?? []).filter((x) => /^node\d+$/.test(x)).length;
  return n > 0 ? n : null;
}

/**
 * The kernel's device list order from `proc/bus/pci/devices` (one line per device, "%02x%02x" bus and
 * devfn first, in registration order: a device re-added by a rescan comes last). The file carries no
 * PCI domain, so it is used only when no bus:devfn repeats across domains.
 * @returns "bb:dd.f" -> position, or null when the file is absent or ambiguous.
 */
function readDeviceListOrder(src: SysfsSource, notes: string[]): Map<string, number> | null {
  const text = src.readText('proc/bus/pci/devices');
  if (text === null) return null;
  const order = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{2})([0-9a-f]{2})\s/i.exec(line);
    if (!m) continue;
    const devfn = Number.parseInt(m[2]!, 16);
    const key = `${m[1]!.toLowerCase()}:${(devfn >> 3).toString(16).padStart(2, '0')}.${devfn & 7}`;
    if (order.has(key)) {
      notes.push(
        'proc/bus/pci/devices lists one bus:devfn twice (several PCI domains): device list order is not used',
      );
      return null;
    }
    order.set(key, order.size);
  }
  return order;
}

/**
 * Read the PCI functions, host bridges, CPU and IOMMU state of a sysfs tree into a Machine.
 * @returns the machine; `Machine.notes` lists what the source did not show.
 * @throws TopologyError when the source is not a sysfs tree (no sys/bus/pci/devices), a device link
 *   is broken, a config file is truncated or garbled, or the devices do not form a PCI hierarchy.
 */
export function readSysfsMachine(src: SysfsSource, opts: ReadSysfsOptions): Machine {
  const entries = src.listDir(DEVICES);
  if (entries === null) {
    throw new TopologyError(
      DEVICES,
      `not a sysfs snapshot: ${src.label} has no ${DEVICES} directory; give a directory or archive holding sys/ and proc/ (made by 'dmasim capture' or hwloc-gather-topology), or / for this machine`,
    );
  }
  const notes: string[] = [];
  const located = locateFunctions(src, entries, notes);
  const known = new Set(located.map((l) => l.name));
  const listOrder = readDeviceListOrder(src, notes);
  const reads = located.map((l) => {
    const r = readFunction(src, l.name, l.dir, l.parent, known);
    const pos = listOrder?.get(l.name.slice(l.name.indexOf(':') + 1));
    return pos === undefined ? r : { ...r, spec: { ...r.spec, listOrder: pos } };
  });
  const proc = readProc(src, notes);
  const iommu = readIommu(src, notes);
  notes.push(...configNotes(reads), ...reads.flatMap((r) => r.notes));
  const x86 = proc.cpu?.arch === 'x86_64' || proc.cpu?.arch === 'i686';
  if (!x86 && reads.some((r) => (r.spec.bars ?? []).length > 0)) {
    notes.push(
      'sysfs shows BARs as CPU addresses only; bus addresses are taken equal to them, which a host bridge on this architecture may offset',
    );
  }
  try {
    return buildMachine({
      name: opts.name,
      source: { kind: opts.kind, path: opts.path },
      ...proc,
      iommu,
      numaNodes: readNumaNodes(src),
      hostBridges: hostBridges(reads),
      functions: reads.map((r) => r.spec),
      notes,
    });
  } catch (e) {
    if (!(e instanceof MachineBuildError)) throw e;
    throw new TopologyError(
      DEVICES,
      `${src.label}: the PCI devices do not form a tree: ${e.message}; the snapshot is incomplete: re-capture it`,
      { cause: e },
    );
  }
}
