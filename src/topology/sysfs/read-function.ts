// Read one PCI function's sysfs directory (sys/devices/pci0000:00/.../0000:03:00.0) into a FunctionSpec:
// the attributes drivers/pci/pci-sysfs.c creates (config, vendor, device, class, revision,
// subsystem_*, resource, numa_node, *_link_*, secondary/subordinate_bus_number) and the driver,
// iommu_group and physfn links (drivers/base/dd.c driver_sysfs_add(), drivers/iommu/iommu.c
// iommu_group_add_device(), drivers/pci/iov.c pci_iov_sysfs_link()).
//
// Optional links are read, not followed: their targets (sys/bus/pci/drivers/nvme, ...) are usually
// not in a snapshot, and only the name at the end matters. A target that would leave the snapshot is
// not trusted: the link is recorded as absent, with a note.

import type { FunctionSpec, ParentRef } from '../../hw/machine-builder.js';
import type { PcieLink, Unknown } from '../../hw/pci.js';
import { ConfigError, type DecodedConfig, decodeConfig } from '../../hw/pci-config.js';
import { TopologyError } from '../errors.js';
import {
  parseDecAttr,
  parseHexAttr,
  parseLinkSpeed,
  parseLinkWidth,
  parseNumaNode,
  parseResource,
} from './pci-attrs.js';
import { baseName, type SysfsSource, splitPath } from './source.js';

/** How much of a function's config space the snapshot showed. */
export type ConfigSeen = 'absent' | 'unpriv' | 'std' | 'full';

export interface FunctionRead {
  readonly spec: FunctionSpec;
  readonly configSeen: ConfigSeen;
  /** Things this function's directory did not show or got wrong, as sentences. */
  readonly notes: readonly string[];
}

const unknown = (reason: string): Unknown => ({ state: 'unknown', reason });

/** Whether a relative link target, taken from the directory `dir`, stays inside the snapshot root. */
export function linkStaysInside(dir: string, target: string): boolean {
  if (target.startsWith('/')) return true;
  let depth = splitPath(dir).length;
  for (const c of splitPath(target)) {
    depth += c === '..' ? -1 : 1;
    if (depth < 0) return false;
  }
  return true;
}

/** Read an optional link's last component; null (with a note) when absent or untrustworthy. */
function optionalLink(src: SysfsSource, dir: string, name: string, notes: string[]): string | null {
  const target = src.readLink(`${dir}/${name}`);
  if (target === null) return null;
  if (!linkStaysInside(dir, target)) {
    notes.push(`the ${name} link of ${dir} points outside the snapshot (${target}); it is ignored`);
    return null;
  }
  const b = baseName(target);
  return b === '' ? null : b;
}

/** Text of an optional attribute; an unreadable one counts as absent (with a note). */
function optText(src: SysfsSource, path: string, notes: string[]): string | null {
  try {
    return src.readText(path);
  } catch (e) {
    if (!(e instanceof TopologyError)) throw e;
    notes.push(e.message);
    return null;
  }
}

/** The header type a function without readable config must have, from its class (PCI-PCI, CardBus). */
function headerTypeFromClass(classCode: number, hasBusNumbers: boolean): number {
  const cls = classCode >> 8;
  if (cls === 0x0607) return 2;
  if (cls === 0x0604 || cls === 0x0609 || hasBusNumbers) return 1;
  return 0;
}

/** Read and decode `config`; null when the file is absent. */
function readConfig(
  src: SysfsSource,
  dir: string,
  virtfn: boolean,
): { raw: Uint8Array; dec: DecodedConfig } | null {
  const path = `${dir}/config`;
  const raw = src.readFile(path);
  if (raw === null) return null;
  try {
    return { raw, dec: decodeConfig(raw, { virtfn }) };
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    throw new TopologyError(
      path,
      `${src.label}: ${path} is not a usable config space: ${e.message}; the snapshot is damaged: re-capture it`,
      { cause: e },
    );
  }
}

/** Reads one attribute of the function's directory as text (null when absent or unreadable). */
type AttrReader = (name: string) => string | null;

/** The identity fields from the text attributes, for a function whose config is absent. */
function fromTextAttrs(src: SysfsSource, dir: string, name: string, t: AttrReader): DecodedConfig {
  const vendor = parseHexAttr(t('vendor'));
  const device = parseHexAttr(t('device'));
  const classCode = parseHexAttr(t('class'));
  if (vendor === null || device === null || classCode === null) {
    throw new TopologyError(
      `${dir}/config`,
      `${src.label}: ${name} has neither a config file nor readable vendor, device and class files in ${dir}; the snapshot is incomplete: re-capture it`,
    );
  }
  const secondaryBus = parseDecAttr(t('secondary_bus_number'));
  const why = `${dir}/config is not in the snapshot: capabilities are unknown`;
  return {
    vendor,
    device,
    classCode,
    revision: parseHexAttr(t('revision')) ?? 0,
    headerType: headerTypeFromClass(classCode, secondaryBus !== null),
    multifunction: false,
    subsystemVendor: parseHexAttr(t('subsystem_vendor')),
    subsystemDevice: parseHexAttr(t('subsystem_device')),
    secondaryBus,
    subordinateBus: parseDecAttr(t('subordinate_bus_number')),
    portType: unknown(why),
    link: null,
    acs: unknown(why),
    sriov: unknown(why),
  };
}

/** The link attributes (pci-sysfs.c), for a function whose config does not show its PCIe capability. */
function textLink(t: AttrReader): PcieLink | null {
  const link: PcieLink = {
    speedGts: parseLinkSpeed(t('current_link_speed')),
    width: parseLinkWidth(t('current_link_width')),
    maxSpeedGts: parseLinkSpeed(t('max_link_speed')),
    maxWidth: parseLinkWidth(t('max_link_width')),
  };
  return Object.values(link).some((v) => v !== null) ? link : null;
}

const seenOf = (n: number): ConfigSeen => (n <= 64 ? 'unpriv' : n <= 256 ? 'std' : 'full');

/**
 * Read the function `name` whose physical directory is `dir`.
 * @param known every function name in the snapshot, to check the physfn link against.
 * @returns the function's spec, how much config space was seen, and notes on what was missing.
 * @throws TopologyError for a damaged config file or a function with no identity at all.
 */
export function readFunction(
  src: SysfsSource,
  name: string,
  dir: string,
  parent: ParentRef,
  known: ReadonlySet<string>,
): FunctionRead {
  const notes: string[] = [];
  const t: AttrReader = (n) => optText(src, `${dir}/${n}`, notes);
  const physfnLink = optionalLink(src, dir, 'physfn', notes);
  const cfg = readConfig(src, dir, physfnLink !== null);
  let d = cfg?.dec ?? fromTextAttrs(src, dir, name, t);
  if (physfnLink !== null && d.vendor === 0xffff) {
    // A VF's ID registers read 0xffff; the kernel's vendor/device files carry the real IDs.
    const ids = fromTextAttrs(src, dir, name, t);
    d = { ...d, vendor: ids.vendor, device: ids.device };
  }
  const bridge = d.headerType === 1 || d.headerType === 2;
  const resText = t('resource');
  const bars = resText === null ? [] : parseResource(resText);
  if (bars === null) notes.push(`${dir}/resource is malformed; the BARs of ${name} are unknown`);
  const group = optionalLink(src, dir, 'iommu_group', notes);
  const physfn = physfnLink;
  if (physfn !== null && !known.has(physfn)) {
    notes.push(`the physfn link of ${name} names ${physfn}, which is not in the snapshot; it is ignored`);
  }
  // The config space is the truth where it was readable; the sysfs text files fill only what it did
  // not show (and are read only then: a large snapshot has tens of thousands of them).
  const spec: FunctionSpec = {
    ...d,
    name,
    parent,
    physfn: physfn !== null && known.has(physfn) ? physfn : undefined,
    revision: cfg ? d.revision : parseHexAttr(t('revision')),
    subsystemVendor: d.subsystemVendor ?? parseHexAttr(t('subsystem_vendor')),
    subsystemDevice: d.subsystemDevice ?? parseHexAttr(t('subsystem_device')),
    secondaryBus: bridge ? (d.secondaryBus ?? parseDecAttr(t('secondary_bus_number'))) : null,
    subordinateBus: bridge ? (d.subordinateBus ?? parseDecAttr(t('subordinate_bus_number'))) : null,
    link: d.link ?? textLink(t),
    bars: bars ?? [],
    config: cfg?.raw ?? null,
    numaNode: parseNumaNode(t('numa_node')),
    iommuGroup: group !== null && /^\d+$/.test(group) ? Number(group) : null,
    driver: optionalLink(src, dir, 'driver', notes),
  };
  return { spec, configSeen: cfg ? seenOf(cfg.raw.length) : 'absent', notes };
}
