// Read an NCCL topology XML (NCCL_TOPO_FILE, NCCL_TOPO_DUMP_FILE; RCCL writes the same) into the
// machine model.
//
// NCCL builds the file in `src/graph/xml.cc` (ncclTopoGetXmlFromSys): from each GPU or NIC it climbs
// sysfs two levels at a time, so each bridge <pci> stands for one switch level (the downstream port
// is folded into it), and it stops at the root complex, which becomes a <cpu> per NUMA node:
//
//   <cpu numaid="0" vendor="AuthenticAMD" familyid="143" modelid="49">     root complex, NUMA node 0
//     <pci busid="0000:43:00.0" class="0x060400">                          a switch
//       <pci busid="0000:4a:00.0" class="0x038000"><gpu dev="0"/></pci>    an endpoint, OS name gpu0
//       <pci busid="0000:45:00.0" class="0x020700"><nic><net name="mlx5_1"/></nic></pci>
//
// There are no host-bridge IDs: each root bus of a top-level <pci> becomes a synthetic host bridge
// with its <cpu>'s NUMA node. There is no config space, so port types, ACS and SR-IOV are unknown.

import { basename } from 'node:path';
import { formatBdf, parseBdf } from '../../hw/bdf.js';
import {
  buildMachine,
  type FunctionSpec,
  type HostBridgeSpec,
  hostBridgeName,
  MachineBuildError,
  type ParentRef,
} from '../../hw/machine-builder.js';
import type { CpuInfo, Machine, PcieLink } from '../../hw/pci.js';
import { TopologyError } from '../errors.js';
import {
  attr,
  children,
  noConfigSpace,
  parseDec,
  parseHex,
  parseXmlDocument,
  type XmlElement,
} from './xml-common.js';

const UNKNOWN = noConfigSpace('NCCL topology XML');

interface Ctx {
  readonly path: string;
  readonly hostBridges: HostBridgeSpec[];
  readonly functions: FunctionSpec[];
  readonly notes: string[];
  /** Each address read so far, with the element and the parent it was read below. */
  readonly seen: Map<string, { parentKey: string; element: XmlElement }>;
  /** Bridge addresses listed more than once, identically, below one parent: how many copies. */
  readonly merged: Map<string, number>;
  /** "cpuIndex pciDDDD:BB" -> the host bridge that root bus stands for below that CPU. */
  readonly rootBridge: Map<string, string>;
  withoutIds: number;
  fabricLinks: number;
}

/**
 * Read an NCCL (or RCCL) topology XML.
 * @returns a Machine with `source.kind = 'nccl-xml'`; cmdline and iommu null (NCCL does not record them).
 * @throws TopologyError naming `path` for XML that is malformed, not an NCCL topology, or whose <pci>
 *   elements are garbled (bad busid or class), duplicated, or nested below a non-bridge.
 */
export function readNcclXml(text: string, path: string): Machine {
  const { tag, root } = parseXmlDocument(text, path);
  if (tag !== 'system') {
    throw new TopologyError(path, `not an NCCL topology: the root element is <${tag}>, not <system>`);
  }
  const cpus = children(root, 'cpu');
  if (cpus.length === 0) throw new TopologyError(path, 'the <system> element holds no <cpu>');
  const ctx: Ctx = {
    path,
    hostBridges: [],
    functions: [],
    notes: [],
    seen: new Map(),
    merged: new Map(),
    rootBridge: new Map(),
    withoutIds: 0,
    fabricLinks: 0,
  };
  addHostBridges(ctx, cpus);
  cpus.forEach((cpu, i) => {
    for (const p of children(cpu, 'pci')) {
      const a = parseBusId(ctx, p);
      const hostBridge = ctx.rootBridge.get(`${i} ${hostBridgeName(a.domain, a.bus)}`)!;
      readPci(ctx, p, { kind: 'host', hostBridge }, numaOf(cpu));
    }
    if (children(cpu, 'nic').length > 0)
      ctx.notes.push(
        `<cpu numaid="${attr(cpu, 'numaid')}"> has <nic> elements outside any <pci>: not PCI functions, ignored`,
      );
  });
  for (const [name, copies] of ctx.merged) {
    ctx.notes.push(
      `bridge <pci busid="${name}"> is listed ${copies} times below one parent with identical attributes: read as one bridge holding the children of every copy`,
    );
  }
  const numaIds = new Set(cpus.map(numaOf).filter((n) => n !== null));
  if (ctx.withoutIds > 0)
    ctx.notes.push(`${ctx.withoutIds} <pci> elements carry no vendor/device IDs: recorded as 0x0000`);
  if (ctx.fabricLinks > 0)
    ctx.notes.push(
      `${ctx.fabricLinks} GPU fabric links (nvlink/xgmi/c2c) are not part of the PCI model: ignored`,
    );
  ctx.notes.push(
    'NCCL topology XML has no host-bridge IDs: one synthetic host bridge per root bus, on its <cpu> NUMA node',
    'NCCL folds each switch into one <pci> element (downstream ports are not listed) and may merge switches',
    'NCCL topology XML has no config space: port types, ACS and SR-IOV are unknown',
  );
  try {
    return buildMachine({
      name: basename(path).replace(/\.xml$/i, ''),
      source: { kind: 'nccl-xml', path },
      cpu: readCpu(cpus[0]!, ctx.notes),
      cmdline: null,
      iommu: null,
      numaNodes: numaIds.size > 0 ? numaIds.size : null,
      hostBridges: ctx.hostBridges,
      functions: ctx.functions,
      notes: ctx.notes,
    });
  } catch (e) {
    if (e instanceof MachineBuildError) throw new TopologyError(path, e.message, { cause: e });
    throw e;
  }
}

const numaOf = (cpu: XmlElement): number | null => {
  const n = parseDec(attr(cpu, 'numaid'));
  return n === null || n < 0 ? null : n;
};

/** Whether two elements carry the same attributes with the same values (in any order). */
function sameAttributes(a: XmlElement, b: XmlElement): boolean {
  const keys = (e: XmlElement): string[] => Object.keys(e).filter((k) => k.startsWith('@_'));
  return keys(a).length === keys(b).length && keys(a).every((k) => a[k] === b[k]);
}

function describe(p: XmlElement): string {
  const b = attr(p, 'busid');
  return b === undefined ? '<pci> without busid' : `<pci busid="${b}">`;
}

function parseBusId(ctx: Ctx, p: XmlElement): { domain: number; bus: number; name: string } {
  const a = parseBdf(attr(p, 'busid') ?? '');
  if (!a)
    throw new TopologyError(
      ctx.path,
      `${describe(p)}: busid is missing or not a PCI address (want dddd:bb:dd.f)`,
    );
  return { domain: a.domain, bus: a.bus, name: formatBdf(a) };
}

/**
 * One synthetic host bridge per root bus of the top-level <pci> elements of each CPU. AWS's p4d file
 * puts root bus ffff:ff below both CPUs (virtual IDs), so a root bus seen below a second CPU gets a
 * host bridge of its own, named with an "@cpuN" suffix, on that CPU's NUMA node.
 */
function addHostBridges(ctx: Ctx, cpus: readonly XmlElement[]): void {
  const firstOwner = new Map<string, number>();
  cpus.forEach((cpu, i) => {
    for (const p of children(cpu, 'pci')) {
      const a = parseBusId(ctx, p);
      const base = hostBridgeName(a.domain, a.bus);
      const owner = firstOwner.get(base) ?? i;
      firstOwner.set(base, owner);
      const name = owner === i ? base : `${base}@cpu${i}`;
      ctx.rootBridge.set(`${i} ${base}`, name);
      if (ctx.hostBridges.some((h) => h.name === name)) continue;
      if (owner !== i) {
        ctx.notes.push(
          `root bus ${base.slice(3)} appears below several <cpu> elements (virtual bus IDs?): host bridge ${name} stands for it below CPU ${i}`,
        );
      }
      ctx.hostBridges.push({ name, domain: a.domain, rootBus: a.bus, numaNode: numaOf(cpu) });
    }
  });
}

/** "16.0 GT/s PCIe" or "8 GT/s" -> 16 or 8; null when empty or unreadable. */
function readLink(p: XmlElement): PcieLink | null {
  const speed = Number.parseFloat(attr(p, 'link_speed') ?? '');
  const width = parseDec(attr(p, 'link_width'));
  if (!(speed > 0) && !(width !== null && width > 0)) return null;
  return {
    speedGts: speed > 0 ? speed : null,
    width: width && width > 0 ? width : null,
    maxSpeedGts: null,
    maxWidth: null,
  };
}

/** OS names of the devices an endpoint <pci> holds: gpuN for <gpu dev="N">, the <net> names of a <nic>. */
function osNamesOf(ctx: Ctx, p: XmlElement): string[] {
  const gpus = children(p, 'gpu');
  for (const g of gpus) {
    ctx.fabricLinks += ['nvlink', 'xgmi', 'c2c'].reduce((n, t) => n + children(g, t).length, 0);
  }
  return [
    ...gpus.flatMap((g) => (attr(g, 'dev') === undefined ? [] : [`gpu${attr(g, 'dev')}`])),
    ...children(p, 'nic').flatMap((n) => children(n, 'net').flatMap((net) => attr(net, 'name') ?? [])),
  ];
}

function readPci(ctx: Ctx, p: XmlElement, parent: ParentRef, numa: number | null): void {
  const bad = (why: string): TopologyError => new TopologyError(ctx.path, `${describe(p)}: ${why}`);
  const { name } = parseBusId(ctx, p);
  const parentKey = parent.kind === 'host' ? parent.hostBridge : parent.name;
  const prev = ctx.seen.get(name);
  if (
    prev &&
    !(prev.parentKey === parentKey && sameAttributes(prev.element, p) && children(p, 'pci').length > 0)
  ) {
    throw bad(`two <pci> elements have the address ${name}`);
  }
  if (prev) {
    // RCCL's topo_4p4h.xml repeats one switch element per GPU/NIC pair below the same parent.
    ctx.merged.set(name, (ctx.merged.get(name) ?? 1) + 1);
    for (const k of children(p, 'pci')) readPci(ctx, k, { kind: 'bridge', name }, numa);
    return;
  }
  ctx.seen.set(name, { parentKey, element: p });
  const classCode = parseHex(attr(p, 'class'));
  if (classCode === null || classCode > 0xffffff)
    throw bad('class is missing or not a 24-bit hex class code (0x060400)');
  // PCI-to-PCI bridges, normal (0x0604) and subtractive-decode (0x0609).
  const isBridge = classCode >> 8 === 0x0604 || classCode >> 8 === 0x0609;
  const kids = children(p, 'pci');
  if (!isBridge && kids.length > 0) {
    throw bad(
      `holds <pci busid="${attr(kids[0]!, 'busid')}">, but class 0x${classCode.toString(16).padStart(6, '0')} is not a bridge`,
    );
  }
  const vendor = parseHex(attr(p, 'vendor'));
  const device = parseHex(attr(p, 'device'));
  if (vendor === null || device === null) ctx.withoutIds++;
  ctx.functions.push({
    name,
    parent,
    vendor: vendor ?? 0,
    device: device ?? 0,
    subsystemVendor: parseHex(attr(p, 'subsystem_vendor')),
    subsystemDevice: parseHex(attr(p, 'subsystem_device')),
    classCode,
    headerType: isBridge ? 1 : 0,
    portType: UNKNOWN,
    link: readLink(p),
    acs: UNKNOWN,
    sriov: UNKNOWN,
    numaNode: numa,
    osNames: osNamesOf(ctx, p),
  });
  for (const k of kids) readPci(ctx, k, { kind: 'bridge', name }, numa);
}

/**
 * NCCL writes cpuid's family + (extended family << 4) as `familyid` (xml.cc, ncclTopoGetXmlFromCpu):
 * 143 is family 0xf + ext 8 = 23 (Zen 2). Extended family is only used when the base family is 0xf,
 * so a value of 16 or more whose low nibble is not 0xf was written by hand as the plain family (AWS's
 * p5 file says 25 for Genoa).
 * @returns the `cpu family` of /proc/cpuinfo.
 */
export function ncclCpuFamily(familyid: number): number {
  return familyid >= 0x10 && (familyid & 0xf) === 0xf ? 0xf + (familyid >> 4) : familyid;
}

function readCpu(cpu: XmlElement, notes: string[]): CpuInfo | null {
  const vendorId = attr(cpu, 'vendor');
  const familyid = parseDec(attr(cpu, 'familyid'));
  const model = parseDec(attr(cpu, 'modelid'));
  const arch = attr(cpu, 'arch');
  if (vendorId === undefined && familyid === null && arch === undefined) {
    notes.push('the first <cpu> has no vendor, familyid or arch: CPU unknown');
    return null;
  }
  const family = familyid === null ? 0 : ncclCpuFamily(familyid);
  if (familyid !== null && family !== familyid)
    notes.push(`NCCL familyid ${familyid} is cpu family ${family}`);
  if (familyid === null || model === null)
    notes.push('the first <cpu> lacks familyid or modelid: recorded as 0');
  return {
    vendorId: vendorId ?? '',
    family,
    model: model ?? 0,
    modelName: '',
    arch: arch ?? '',
    sockets: null,
  };
}
