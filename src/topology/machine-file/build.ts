// Build a Machine from a validated machine-file document: lay out addresses (layout.ts), allocate
// BARs (bars.ts), settle links and ACS, encode every function's config space, link the tree with the
// hw machine builder, then boot-program ACS the way Linux does (kernel/pci/acs.ts).

import { busAddr, bytes, physAddr } from '../../hw/addr.js';
import {
  buildMachine,
  type FunctionSpec,
  type HostBridgeSpec,
  hostBridgeName,
} from '../../hw/machine-builder.js';
import type { CpuInfo, Machine, MachineSourceKind, PciBar, PcieLink } from '../../hw/pci.js';
import { decodeConfig } from '../../hw/pci-config.js';
import { type ConfigFields, encodeConfig } from '../../hw/pci-config-encode.js';
import {
  type BootLogLine,
  type IommuPlatform,
  iommuBootState,
  iommuRequestsAcs,
  pciEnableAcs,
} from '../../kernel/pci/acs.js';
import { DEFAULT_KERNEL, type KernelVersion } from '../../kernel/profile.js';
import {
  allocateHostBridge,
  type BridgeWindows,
  barHints,
  checkBars,
  defaultWindows,
  type PlannedBar,
  planBars,
} from './bars.js';
import { defaultAcsCap, defaultDriver } from './device-defaults.js';
import { layoutMachine } from './layout.js';
import { type FnNode, fnName, type Problem, walkFunctions } from './nodes.js';
import type { LinkDoc, MachineFileDoc } from './schema.js';
import { acsBitList, GEN_GTS } from './values.js';

export interface MachineFileOptions {
  /** Kernel profile whose boot-time ACS programming runs on the machine; default DEFAULT_KERNEL. */
  readonly kernel?: KernelVersion | undefined;
  readonly source?: { readonly kind: MachineSourceKind; readonly path: string } | undefined;
}

export interface BuiltMachine {
  readonly machine: Machine;
  /** Kernel log lines of the boot-time ACS programming (also in machine.notes, prefixed "kernel: "). */
  readonly bootLog: readonly BootLogLine[];
}

/** Thrown with every problem found; the caller positions them in the YAML text. */
export class MachineDesignError extends Error {
  readonly problems: readonly Problem[];
  constructor(problems: readonly Problem[]) {
    super(problems.map((p) => p.message).join('\n'));
    this.problems = problems;
  }
}

const DEFAULT_PORT_LINK: LinkDoc = { gen: 3, width: 16 };

/** Link capability of a function: its own, else its port's (devices take the link they sit on). */
function maxLink(f: FnNode, dflt: LinkDoc): LinkDoc | null {
  if (f.portType === 'none' || f.portType === 'rc-integrated-endpoint' || f.role === 'host-bridge')
    return null;
  if (f.linkDoc) return f.linkDoc;
  if (f.role === 'root-port' || f.role === 'downstream-port') return dflt;
  return f.parent ? maxLink(f.parent, dflt) : null;
}

/**
 * Capability and trained state of each function's link, as LNKCAP/LNKSTA will show them. Both ends of
 * a link train to the lower generation and width, unless the file says what it trained to
 * (currentGen/currentWidth on either end); a port with nothing below has its link down.
 */
function linkOf(f: FnNode, dflt: LinkDoc): PcieLink | null {
  const own = maxLink(f, dflt);
  if (!own) return null;
  const isPort = f.role === 'root-port' || f.role === 'downstream-port';
  const port = isPort ? f : f.parent;
  const child = isPort ? f.children.find((c) => c.devfn === 0 && c.portType !== 'none') : f;
  const pm = port ? maxLink(port, dflt) : null;
  const cm = child ? maxLink(child, dflt) : null;
  const up = pm !== null && cm !== null;
  const gen = up ? (child?.linkDoc?.currentGen ?? port?.linkDoc?.currentGen ?? Math.min(pm.gen, cm.gen)) : 1;
  const width = up
    ? (child?.linkDoc?.currentWidth ?? port?.linkDoc?.currentWidth ?? Math.min(pm.width, cm.width))
    : null;
  return {
    speedGts: GEN_GTS[gen] ?? null,
    width,
    maxSpeedGts: GEN_GTS[own.gen] ?? null,
    maxWidth: own.width,
  };
}

/** ACS capability and firmware control of a function, or null when it has none. */
function acsOf(f: FnNode, problems: Problem[]): { cap: number; ctrl: number } | null {
  const ports = f.role === 'root-port' || f.role === 'downstream-port';
  const a = f.acsDoc ?? (ports ? 'default' : 'none');
  if (a === 'none') return null;
  if (f.portType === 'none') {
    problems.push({ path: f.path, key: 'acs', message: 'a conventional PCI function has no ACS capability' });
    return null;
  }
  const dflt = defaultAcsCap(f.id, f.role);
  if (a === 'default') return dflt === null ? null : { cap: dflt, ctrl: 0 };
  const cap = a.cap === 'default' ? dflt : a.cap;
  if (cap === null) {
    problems.push({
      path: [...f.path, 'acs'],
      key: 'cap',
      message: `no default ACS capability for a ${f.role}: list the bits`,
    });
    return null;
  }
  const ctrl = a.ctrl ?? 0;
  if (ctrl & ~cap) {
    problems.push({
      path: [...f.path, 'acs'],
      key: 'ctrl',
      message: `control bit(s) ${acsBitList(ctrl & ~cap)} are not in the capability (${acsBitList(cap)})`,
    });
  }
  return { cap, ctrl: ctrl & cap };
}

function sriovOf(f: FnNode, problems: Problem[]): ConfigFields['sriov'] {
  const s = f.sriov;
  if (!s) return null;
  if (f.portType === 'none')
    problems.push({ path: f.path, key: 'sriov', message: 'SR-IOV needs a PCIe function' });
  if (s.vfId && s.vfId.vendor !== f.id.vendor) {
    problems.push({ path: [...f.path, 'sriov'], key: 'vfId', message: 'a VF has the vendor ID of its PF' });
  }
  return {
    totalVfs: s.totalVfs,
    numVfs: 0,
    vfOffset: s.vfOffset ?? 1,
    vfStride: s.vfStride ?? 1,
    vfDevice: s.vfId?.device ?? f.id.device,
  };
}

const windowBus = (r: { base: bigint; size: bigint } | null, offset: bigint) =>
  r ? { base: r.base - offset, limit: r.base - offset + r.size - 1n } : null;

/** Encode one function and describe it for the hw machine builder. */
function functionSpec(
  f: FnNode,
  bars: readonly PlannedBar[],
  wins: BridgeWindows | undefined,
  ctx: { dflt: LinkDoc; problems: Problem[] },
): FunctionSpec {
  const offset = f.hb.doc.busOffset ?? 0n;
  const bridge = f.below !== null;
  const acs = acsOf(f, ctx.problems);
  const fields: ConfigFields = {
    vendor: f.id.vendor,
    device: f.id.device,
    revision: f.revision,
    classCode: f.classCode,
    headerType: bridge ? 1 : 0,
    multifunction: f.multifunction,
    subsystemVendor: f.subsystem?.vendor ?? (bridge ? null : f.id.vendor),
    subsystemDevice: f.subsystem?.device ?? (bridge ? null : f.id.device),
    primaryBus: f.bus,
    secondaryBus: f.secondary,
    subordinateBus: f.subordinate,
    portType: f.portType,
    link: linkOf(f, ctx.dflt),
    acs: acs ? { state: 'present', ...acs } : { state: 'absent' },
    sriov: sriovOf(f, ctx.problems),
    bars: bars.map((b) => ({ ...b, busStart: busAddr((b.cpuStart ?? 0n) - offset), size: bytes(b.size) })),
    memWindow: windowBus(wins?.np ?? null, offset),
    prefWindow: windowBus(wins?.pf ?? null, offset),
  };
  const config = encodeConfig(fields);
  const d = decodeConfig(config);
  const pciBars: PciBar[] = bars.map((b) => ({
    index: b.index,
    kind: b.kind,
    prefetchable: b.prefetchable,
    cpuStart: physAddr(b.cpuStart ?? 0n),
    busStart: busAddr((b.cpuStart ?? 0n) - offset),
    size: bytes(b.size),
  }));
  const hints = barHints(bars);
  const name = fnName(f);
  return {
    ...d,
    name,
    parent: f.parent
      ? { kind: 'bridge', name: fnName(f.parent) }
      : { kind: 'host', hostBridge: hostBridgeName(f.hb.domain, f.hb.rootBus) },
    bars: pciBars,
    config,
    numaNode: f.hb.doc.numaNode ?? null,
    driver: f.driver === undefined ? defaultDriver(f.id, f.classCode, f.role) : f.driver,
    osNames: f.label ? [f.label] : [],
    ...(hints.cmb || hints.vram ? { hints } : {}),
  };
}

function cpuOf(doc: MachineFileDoc): CpuInfo | null {
  const c = doc.cpu;
  if (!c) return null;
  const vendorId = /^intel$/i.test(c.vendor)
    ? 'GenuineIntel'
    : /^amd$/i.test(c.vendor)
      ? 'AuthenticAMD'
      : c.vendor;
  return {
    vendorId,
    family: c.family,
    model: c.model,
    modelName: c.name,
    arch: c.arch ?? 'x86_64',
    sockets: c.sockets ?? null,
  };
}

/**
 * Build the machine a document designs and run the kernel's boot-time ACS programming on it.
 * @throws MachineDesignError listing every problem (paths into the document) when it cannot be built.
 */
export function buildFromDoc(doc: MachineFileDoc, name: string, opts: MachineFileOptions = {}): BuiltMachine {
  const { hbs, problems } = layoutMachine(doc);
  if (problems.length > 0) throw new MachineDesignError(problems);
  const dflt = doc.defaults?.link ?? DEFAULT_PORT_LINK;
  const specs: FunctionSpec[] = [];
  const allBars: { f: FnNode; b: PlannedBar; busStart: bigint }[] = [];
  const externalFacing = new Set<string>();
  for (const hb of hbs) {
    const bars = new Map<FnNode, PlannedBar[]>();
    for (const f of walkFunctions(hb)) bars.set(f, planBars(f, problems));
    const dw = defaultWindows(hb.index, hbs.length);
    const mmio = { np: hb.doc.mmio ?? dw.np, pf: hb.doc.mmio64 ?? dw.pf };
    const wins = allocateHostBridge(hb, bars, mmio, problems);
    for (const f of walkFunctions(hb)) {
      const fb = bars.get(f) ?? [];
      for (const b of fb) allBars.push({ f, b, busStart: (b.cpuStart ?? 0n) - (hb.doc.busOffset ?? 0n) });
      if (f.externalFacing) externalFacing.add(fnName(f));
      if (problems.length === 0) specs.push(functionSpec(f, fb, wins.get(f), { dflt, problems }));
    }
  }
  checkBars(allBars, problems);
  if (problems.length > 0) throw new MachineDesignError(problems);
  const hostBridges: HostBridgeSpec[] = hbs.map((h) => ({
    name: hostBridgeName(h.domain, h.rootBus),
    domain: h.domain,
    rootBus: h.rootBus,
    numaNode: h.doc.numaNode ?? null,
  }));
  const cmdline = doc.kernel?.cmdline ?? '';
  const platform: IommuPlatform = {
    vendor: doc.iommu && doc.iommu.enabled !== false ? doc.iommu.vendor : 'none',
    platformOptIn: doc.iommu?.platformOptIn,
    intelDefaultOn: doc.iommu?.defaultOn,
  };
  const numa = hbs.map((h) => h.doc.numaNode ?? -1).reduce((a, b) => Math.max(a, b), -1);
  const machine = buildMachine({
    name,
    source: opts.source ?? { kind: 'machine-file', path: name },
    cpu: cpuOf(doc),
    cmdline,
    kernelRelease: doc.kernel?.release ?? null,
    iommu: iommuBootState(platform, cmdline).translates,
    numaNodes: doc.numaNodes ?? (numa >= 0 ? numa + 1 : null),
    hostBridges,
    functions: specs,
  });
  const bootLog = pciEnableAcs(machine, {
    acsRequested: iommuRequestsAcs(platform, cmdline),
    cmdline,
    version: opts.kernel ?? DEFAULT_KERNEL,
    externalFacing,
  });
  return {
    machine: { ...machine, notes: [...machine.notes, ...bootLog.map((l) => `kernel: ${l.text}`)] },
    bootLog,
  };
}
