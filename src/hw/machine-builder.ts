// Build a linked, validated Machine from flat descriptions of host bridges and functions.
//
// Every reader (sysfs snapshot, hwloc XML, NCCL XML, machine file) produces the same flat spec: each
// function names its parent, either a host bridge or the bridge above it. This file links them into
// the tree, orders everything as the kernel enumerates it (domain, bus, devfn), and rejects specs that
// cannot describe a real PCI hierarchy (a missing parent, a loop, two functions at one address).

import { bdfKey, formatBdf, parseBdf } from './bdf.js';
import type {
  AcsInfo,
  CpuInfo,
  DeviceHints,
  HostBridge,
  Machine,
  MachineSourceKind,
  PciBar,
  PcieLink,
  PciFunction,
  SriovInfo,
  Unknown,
} from './pci.js';
import type { PciePortType } from './pci-regs.js';

export class MachineBuildError extends Error {}

export type ParentRef =
  | { readonly kind: 'host'; readonly hostBridge: string }
  | { readonly kind: 'bridge'; readonly name: string };

export interface FunctionSpec {
  readonly name: string;
  readonly parent: ParentRef;
  readonly physfn?: string | undefined;
  readonly vendor: number;
  readonly device: number;
  readonly subsystemVendor?: number | null | undefined;
  readonly subsystemDevice?: number | null | undefined;
  readonly classCode: number;
  readonly revision?: number | null | undefined;
  readonly headerType: number;
  readonly multifunction?: boolean | undefined;
  readonly bars?: readonly PciBar[] | undefined;
  readonly config?: Uint8Array | null | undefined;
  readonly portType: PciePortType | 'none' | Unknown;
  readonly link?: PcieLink | null | undefined;
  readonly acs: AcsInfo;
  readonly sriov?: SriovInfo | null | Unknown | undefined;
  readonly secondaryBus?: number | null | undefined;
  readonly subordinateBus?: number | null | undefined;
  readonly numaNode?: number | null | undefined;
  readonly iommuGroup?: number | null | undefined;
  readonly driver?: string | null | undefined;
  readonly osNames?: readonly string[] | undefined;
  readonly hints?: DeviceHints | undefined;
  /**
   * Position in the kernel's device list (registration order), when the source shows it: devices
   * re-added by a hot-plug rescan go to the end of their bus's list. Unknown: boot order = devfn order.
   */
  readonly listOrder?: number | undefined;
}

export interface HostBridgeSpec {
  readonly name: string;
  readonly domain: number;
  readonly rootBus: number;
  readonly numaNode?: number | null | undefined;
}

export interface MachineSpec {
  readonly name: string;
  readonly source: { readonly kind: MachineSourceKind; readonly path: string };
  readonly cpu: CpuInfo | null;
  readonly cmdline: string | null;
  readonly kernelRelease?: string | null | undefined;
  readonly iommu: boolean | null;
  readonly numaNodes?: number | null | undefined;
  readonly hostBridges: readonly HostBridgeSpec[];
  readonly functions: readonly FunctionSpec[];
  readonly notes?: readonly string[] | undefined;
}

/** "pci0000:00" for domain 0, root bus 0 (the kernel's host-bridge device name). */
export const hostBridgeName = (domain: number, rootBus: number): string =>
  `pci${domain.toString(16).padStart(4, '0')}:${rootBus.toString(16).padStart(2, '0')}`;

/**
 * Link the spec into a Machine.
 * @throws MachineBuildError naming the offending function when the spec is not a tree of known parents.
 */
export function buildMachine(spec: MachineSpec): Machine {
  const hostBridges = new Map<string, HostBridge>();
  for (const h of spec.hostBridges) {
    if (hostBridges.has(h.name)) throw new MachineBuildError(`host bridge ${h.name} is listed twice`);
    hostBridges.set(h.name, {
      name: h.name,
      domain: h.domain,
      rootBus: h.rootBus,
      numaNode: h.numaNode ?? null,
      rootFunctions: [],
      index: 0,
    });
  }
  const byName = new Map<string, PciFunction>();
  const placeholder = [...hostBridges.values()][0];
  for (const s of spec.functions) {
    const addr = parseBdf(s.name);
    if (!addr) throw new MachineBuildError(`${s.name}: not a PCI address (want dddd:bb:dd.f)`);
    const name = formatBdf(addr);
    if (byName.has(name)) throw new MachineBuildError(`${name}: two functions have this address`);
    if (!placeholder) throw new MachineBuildError(`${name}: the machine has no host bridge`);
    byName.set(name, {
      name,
      addr,
      vendor: s.vendor,
      device: s.device,
      subsystemVendor: s.subsystemVendor ?? null,
      subsystemDevice: s.subsystemDevice ?? null,
      classCode: s.classCode,
      revision: s.revision ?? null,
      headerType: s.headerType,
      multifunction: s.multifunction ?? false,
      bars: s.bars ?? [],
      config: s.config ?? null,
      portType: s.portType,
      link: s.link ?? null,
      acs: s.acs,
      sriov: s.sriov ?? null,
      secondaryBus: s.secondaryBus ?? null,
      subordinateBus: s.subordinateBus ?? null,
      bridge: null,
      physfn: null,
      hostBridge: placeholder,
      children: [],
      numaNode: s.numaNode ?? null,
      iommuGroup: s.iommuGroup ?? null,
      driver: s.driver ?? null,
      osNames: s.osNames ?? [],
      ...(s.hints ? { hints: s.hints } : {}),
      index: 0,
    });
  }
  for (const s of spec.functions) {
    const f = byName.get(formatBdf(parseBdf(s.name)!))!;
    if (s.parent.kind === 'host') {
      const h = hostBridges.get(s.parent.hostBridge);
      if (!h)
        throw new MachineBuildError(`${f.name}: host bridge ${s.parent.hostBridge} is not in the machine`);
      f.hostBridge = h;
      h.rootFunctions.push(f);
    } else {
      const pAddr = parseBdf(s.parent.name);
      const p = pAddr ? byName.get(formatBdf(pAddr)) : undefined;
      if (!p)
        throw new MachineBuildError(`${f.name}: its parent bridge ${s.parent.name} is not in the machine`);
      if (p === f) throw new MachineBuildError(`${f.name}: is its own parent`);
      f.bridge = p;
      p.children.push(f);
    }
    if (s.physfn !== undefined) {
      const pf = byName.get(formatBdf(parseBdf(s.physfn) ?? f.addr));
      if (!pf || pf === f)
        throw new MachineBuildError(`${f.name}: its physical function ${s.physfn} is not in the machine`);
      f.physfn = pf;
    }
  }
  // Resolve each function's host bridge by walking up; a walk longer than the function count is a loop.
  const limit = byName.size + 1;
  for (const f of byName.values()) {
    let top = f;
    for (let n = 0; top.bridge; n++) {
      if (n > limit) throw new MachineBuildError(`${f.name}: its chain of parent bridges loops`);
      top = top.bridge;
    }
    if (top !== f) f.hostBridge = top.hostBridge;
    else if (f.bridge === null && !f.hostBridge.rootFunctions.includes(f)) {
      throw new MachineBuildError(`${f.name}: has neither a parent bridge nor a host bridge`);
    }
  }
  const order = (a: PciFunction, b: PciFunction): number => bdfKey(a.addr) - bdfKey(b.addr);
  // A root bus's list order decides which device pci_host_bridge_dev() checks: registration order when
  // known (a device re-added by a rescan is last), else the boot scan's devfn order.
  const listOrder = new Map<string, number>();
  for (const s of spec.functions)
    if (s.listOrder !== undefined) listOrder.set(formatBdf(parseBdf(s.name)!), s.listOrder);
  const busOrder = (a: PciFunction, b: PciFunction): number =>
    (listOrder.get(a.name) ?? Number.POSITIVE_INFINITY) -
      (listOrder.get(b.name) ?? Number.POSITIVE_INFINITY) || order(a, b);
  const functions = [...byName.values()].sort(order);
  functions.forEach((f, i) => {
    f.index = i;
    f.children.sort(order);
  });
  const hbs = [...hostBridges.values()].sort((a, b) => a.domain - b.domain || a.rootBus - b.rootBus);
  hbs.forEach((h, i) => {
    h.index = i;
    h.rootFunctions.sort(busOrder);
  });
  return {
    name: spec.name,
    source: spec.source,
    cpu: spec.cpu,
    cmdline: spec.cmdline,
    kernelRelease: spec.kernelRelease ?? null,
    iommu: spec.iommu,
    numaNodes: spec.numaNodes ?? null,
    hostBridges: hbs,
    functions,
    byName: new Map(functions.map((f) => [f.name, f])),
    notes: spec.notes ?? [],
  };
}

/** Look a function up by any spelling of its address ("3:00.0", "0000:03:00.0"). */
export function findFunction(m: Machine, bdf: string): PciFunction | undefined {
  const a = parseBdf(bdf);
  return a ? m.byName.get(formatBdf(a)) : undefined;
}
