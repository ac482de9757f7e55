// Write a Machine as a sysfs snapshot: the layout `openSnapshot` reads and `dmasim capture` writes
// (sys/bus/pci/devices links into sys/devices/pci<dom>:<bus>/..., each function's attributes as the
// kernel's pci-sysfs.c prints them, driver/iommu_group links, proc/cpuinfo, proc/cmdline). It turns a
// designed machine into the same evidence a real one gives, e.g. to benchmark the reader.

import type { CpuInfo, Machine, PciFunction } from '../../hw/pci.js';
import { buildTar, type TarEntry } from './tar-build.js';

const x = (v: number, w: number): string => `0x${v.toString(16).padStart(w, '0')}`;
const x64 = (v: bigint): string => `0x${v.toString(16).padStart(16, '0')}`;

/** IORESOURCE_* flag bits as `resource` shows them. */
const IORESOURCE_IO = 0x100;
const IORESOURCE_MEM = 0x200;
const IORESOURCE_PREFETCH = 0x2000;
const IORESOURCE_MEM_64 = 0x100000;

/** `resource`: one "start end flags" line per resource (BARs 0-5, the ROM, then unused lines). */
function resourceText(f: PciFunction): string {
  const lines: string[] = [];
  for (let i = 0; i < 13; i++) {
    const bar = f.bars.find((b) => b.index === i);
    if (!bar || bar.size === 0n) {
      lines.push(`${x64(0n)} ${x64(0n)} ${x64(0n)}`);
      continue;
    }
    let flags = bar.kind === 'io' ? IORESOURCE_IO : IORESOURCE_MEM;
    if (bar.kind === 'mem64') flags |= IORESOURCE_MEM_64;
    if (bar.prefetchable) flags |= IORESOURCE_PREFETCH;
    lines.push(`${x64(bar.cpuStart)} ${x64(bar.cpuStart + bar.size - 1n)} ${x64(BigInt(flags))}`);
  }
  return `${lines.join('\n')}\n`;
}

const speedText = (gts: number | null): string => (gts === null ? 'Unknown' : `${gts.toFixed(1)} GT/s PCIe`);

/** /proc/cpuinfo with one logical CPU per socket (enough for vendor, family, model and sockets). */
function cpuinfoText(cpu: CpuInfo): string {
  const n = Math.max(1, cpu.sockets ?? 1);
  let out = '';
  for (let i = 0; i < n; i++) {
    out += `processor\t: ${i}\nvendor_id\t: ${cpu.vendorId}\ncpu family\t: ${cpu.family}\nmodel\t\t: ${cpu.model}\nmodel name\t: ${cpu.modelName}\nphysical id\t: ${i}\n\n`;
  }
  return out;
}

/** The sysfs directory of a function, relative to `sys/`: devices/pci0000:00/<bridges...>/<bdf>. */
function devicePath(f: PciFunction): string[] {
  const chain: string[] = [];
  for (let p: PciFunction | null = f; p; p = p.bridge) chain.unshift(p.name);
  let top: PciFunction = f;
  while (top.bridge) top = top.bridge;
  return ['devices', top.hostBridge.name, ...chain];
}

/** The tar entries of the snapshot, under one top folder. */
export function snapshotEntries(m: Machine, top: string): TarEntry[] {
  const e: TarEntry[] = [];
  const file = (path: string, data: string | Uint8Array): void => {
    e.push({ path: `${top}/${path}`, data });
  };
  const link = (path: string, target: string): void => {
    e.push({ path: `${top}/${path}`, symlink: target });
  };
  for (const f of m.functions) {
    const parts = devicePath(f);
    const dir = `sys/${parts.join('/')}`;
    const up = '../'.repeat(parts.length);
    e.push({ path: `${top}/${dir}`, dir: true });
    if (f.config) file(`${dir}/config`, f.config);
    file(`${dir}/vendor`, `${x(f.vendor, 4)}\n`);
    file(`${dir}/device`, `${x(f.device, 4)}\n`);
    file(`${dir}/class`, `${x(f.classCode, 6)}\n`);
    if (f.revision !== null) file(`${dir}/revision`, `${x(f.revision, 2)}\n`);
    if (f.subsystemVendor !== null) file(`${dir}/subsystem_vendor`, `${x(f.subsystemVendor, 4)}\n`);
    if (f.subsystemDevice !== null) file(`${dir}/subsystem_device`, `${x(f.subsystemDevice, 4)}\n`);
    file(`${dir}/resource`, resourceText(f));
    file(`${dir}/numa_node`, `${f.numaNode ?? -1}\n`);
    if (f.link) {
      file(`${dir}/current_link_speed`, `${speedText(f.link.speedGts)}\n`);
      file(`${dir}/current_link_width`, `${f.link.width ?? 0}\n`);
      file(`${dir}/max_link_speed`, `${speedText(f.link.maxSpeedGts)}\n`);
      file(`${dir}/max_link_width`, `${f.link.maxWidth ?? 0}\n`);
    }
    if (f.secondaryBus !== null) file(`${dir}/secondary_bus_number`, `${f.secondaryBus}\n`);
    if (f.subordinateBus !== null) file(`${dir}/subordinate_bus_number`, `${f.subordinateBus}\n`);
    if (f.driver) link(`${dir}/driver`, `${up}bus/pci/drivers/${f.driver}`);
    if (f.iommuGroup !== null) {
      link(`${dir}/iommu_group`, `${up}kernel/iommu_groups/${f.iommuGroup}`);
      link(`sys/kernel/iommu_groups/${f.iommuGroup}/devices/${f.name}`, `../../../../${dir.slice(4)}`);
    }
    if (f.physfn) link(`${dir}/physfn`, `../${f.physfn.name}`);
    link(`sys/bus/pci/devices/${f.name}`, `../../../${dir.slice(4)}`);
  }
  if (m.iommu !== null) e.push({ path: `${top}/sys/kernel/iommu_groups`, dir: true });
  if (m.cpu) file('proc/cpuinfo', cpuinfoText(m.cpu));
  if (m.cmdline !== null) file('proc/cmdline', `${m.cmdline}\n`);
  if (m.kernelRelease) file('proc/version', `Linux version ${m.kernelRelease} (dmasim snapshot)\n`);
  return e;
}

/** The snapshot as an uncompressed tar (gzip it for a .tar.gz). */
export function writeSnapshotTar(m: Machine, top = m.name): Uint8Array {
  return buildTar(snapshotEntries(m, top));
}
