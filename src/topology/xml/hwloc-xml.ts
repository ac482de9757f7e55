// Read an hwloc XML topology (`lstopo -.xml`, formats v1 and v2/v3) into the machine model.
//
// hwloc writes the I/O tree as nested objects below the CPU object it is local to (hwloc's
// `hwloc/topology-xml.c` and `hwloc/pci-common.c` define the attributes read here):
//
//   Package (v2: NUMANode is a memory child beside the I/O children; v1: NUMANode is an ancestor)
//     `-- Bridge bridge_type="0-1" bridge_pci="0000:[2b-3b]"     host bridge: domain and root bus
//           `-- Bridge bridge_type="1-1" pci_busid="0000:2b:00.0" bridge_pci="0000:[2c-3b]"
//                 `-- PCIDev pci_busid="0000:2c:00.0" pci_type="0302 [10de:1db8] [10de:131d] a1 00"
//                       `-- OSDev name="nvml0"
//
// There is no config space in the XML, so port types, ACS and SR-IOV are unknown (never guessed). The
// nesting is hwloc's view of the tree and is kept as written, even where a bus range disagrees.

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
import { attr, children, noConfigSpace, parseDec, parseXmlDocument, type XmlElement } from './xml-common.js';

const UNKNOWN = noConfigSpace('hwloc XML');

interface BusRange {
  readonly domain: number;
  readonly first: number;
  readonly last: number;
  readonly owner: string;
}

interface Ctx {
  readonly path: string;
  readonly v1: boolean;
  readonly hostBridges: HostBridgeSpec[];
  readonly functions: FunctionSpec[];
  readonly notes: string[];
  /** Each PCI address read so far: whether it lay in its parent's bus range, and where. */
  readonly seen: Map<string, { inRange: boolean; element: XmlElement; owner: string }>;
  withoutProgIf: number;
}

type PciIds = Pick<
  FunctionSpec,
  'classCode' | 'vendor' | 'device' | 'subsystemVendor' | 'subsystemDevice' | 'revision'
>;

/**
 * Read an hwloc XML topology.
 * @returns a Machine with `source.kind = 'hwloc-xml'`; cmdline and iommu null (hwloc does not record them).
 * @throws TopologyError naming `path` for XML that is malformed, not an hwloc topology, or whose PCI
 *   objects are garbled (bad busid or pci_type), duplicated, or nested where PCI cannot nest.
 */
export function readHwlocXml(text: string, path: string): Machine {
  const { tag, root } = parseXmlDocument(text, path);
  if (tag !== 'topology') {
    throw new TopologyError(path, `not an hwloc XML topology: the root element is <${tag}>, not <topology>`);
  }
  const version = attr(root, 'version');
  const top = children(root, 'object');
  if (top.length === 0) throw new TopologyError(path, 'the <topology> element holds no <object>');
  const ctx: Ctx = {
    path,
    v1: version === undefined || version.startsWith('1'),
    hostBridges: [],
    functions: [],
    notes: [],
    seen: new Map(),
    withoutProgIf: 0,
  };
  for (const o of top) walkObject(ctx, o, []);
  const counts = countTypes(top);
  // hwloc 3 writes machine-wide infos (Architecture, OSRelease) under <topology>; 1.x and 2.x on Machine.
  const info = new Map([...infos(root), ...top.flatMap((o) => [...infos(o)])]);
  const cpu = readCpu(top, info, counts.get('Package') ?? 0, ctx.notes);
  if (ctx.withoutProgIf > 0) {
    ctx.notes.push(
      `${ctx.withoutProgIf} pci_type attributes have no prog-if (hwloc before 2021): recorded as 0`,
    );
  }
  ctx.notes.push(
    'hwloc XML has no config space: port types, ACS and SR-IOV are unknown',
    'lstopo drops bridges and functions that lead to nothing it deems important (unless --whole-io): a function missing here may still exist',
  );
  try {
    return buildMachine({
      name: basename(path).replace(/\.xml$/i, ''),
      source: { kind: 'hwloc-xml', path },
      cpu,
      cmdline: null,
      kernelRelease: info.get('OSRelease') ?? null,
      iommu: null,
      numaNodes: counts.get('NUMANode') ?? 0,
      hostBridges: ctx.hostBridges,
      functions: markMultifunction(ctx.functions),
      notes: ctx.notes,
    });
  } catch (e) {
    if (e instanceof MachineBuildError) throw new TopologyError(path, e.message, { cause: e });
    throw e;
  }
}

/** "PCIDev object (pci_busid "0000:34:00.0", gp_index 581)": how errors and notes name an object. */
function describe(o: XmlElement): string {
  const parts = [
    attr(o, 'pci_busid') !== undefined ? `pci_busid "${attr(o, 'pci_busid')}"` : '',
    attr(o, 'bridge_pci') !== undefined ? `bridge_pci "${attr(o, 'bridge_pci')}"` : '',
    attr(o, 'gp_index') !== undefined ? `gp_index ${attr(o, 'gp_index')}` : '',
  ].filter((s) => s !== '');
  return `${attr(o, 'type') ?? 'untyped'} object${parts.length > 0 ? ` (${parts.join(', ')})` : ''}`;
}

const isPciType = (t: string | undefined): boolean => t === 'Bridge' || t === 'PCIDev';

/** Walk the CPU/memory part of the tree until a host bridge is found. */
function walkObject(ctx: Ctx, o: XmlElement, ancestors: readonly XmlElement[]): void {
  const type = attr(o, 'type');
  if (type === 'Bridge' && attr(o, 'bridge_type')?.startsWith('0-')) {
    readHostBridge(ctx, o, ancestors);
    return;
  }
  if (isPciType(type)) {
    throw new TopologyError(ctx.path, `${describe(o)} is not inside a host bridge (bridge_type "0-1")`);
  }
  const inner = [...ancestors, o];
  for (const c of children(o, 'object')) walkObject(ctx, c, inner);
}

/** "0000:[2c-3b]" -> domain 0, buses 0x2c..0x3b. */
function parseBusRange(s: string | undefined, owner: string): BusRange | null {
  const m = /^\s*([0-9a-f]{4,8}):\[([0-9a-f]{1,2})-([0-9a-f]{1,2})\]\s*$/i.exec(s ?? '');
  if (!m) return null;
  const first = Number.parseInt(m[2]!, 16);
  const last = Number.parseInt(m[3]!, 16);
  return first <= last ? { domain: Number.parseInt(m[1]!, 16), first, last, owner } : null;
}

function readHostBridge(ctx: Ctx, o: XmlElement, ancestors: readonly XmlElement[]): void {
  const r0 = parseBusRange(attr(o, 'bridge_pci'), '');
  if (!r0) throw new TopologyError(ctx.path, `${describe(o)}: bridge_pci is not "dddd:[bb-bb]"`);
  const name = hostBridgeName(r0.domain, r0.first);
  if (ctx.hostBridges.some((h) => h.name === name)) {
    throw new TopologyError(ctx.path, `two host bridges have root bus ${name.slice(3)} (${describe(o)})`);
  }
  const numa = numaOf(ancestors, ctx.v1);
  if (numa.node === null) ctx.notes.push(`host bridge ${name}: ${numa.why}; its NUMA node is unknown`);
  ctx.hostBridges.push({ name, domain: r0.domain, rootBus: r0.first, numaNode: numa.node });
  const range = { ...r0, owner: `host bridge ${name}` };
  for (const c of children(o, 'object')) {
    readPciObject(ctx, c, { kind: 'host', hostBridge: name }, range, numa.node);
  }
}

/** NUMA nodes among the memory children of a v2 object (directly or inside a MemCache). */
function memoryNumaNodes(o: XmlElement): number[] {
  return children(o, 'object').flatMap((c) => {
    const t = attr(c, 'type');
    if (t === 'NUMANode') return [parseDec(attr(c, 'os_index')) ?? -1];
    return t === 'MemCache' ? memoryNumaNodes(c) : [];
  });
}

/**
 * The NUMA node an I/O subtree is local to. v1 nests objects inside their NUMANode; v2 attaches both
 * the NUMANode (as a memory child) and the I/O children to the same parent, so the nearest ancestor
 * with exactly one NUMA memory child gives the node; one with several means the locality is wider.
 */
function numaOf(ancestors: readonly XmlElement[], v1: boolean): { node: number | null; why: string } {
  for (let i = ancestors.length - 1; i >= 0; i--) {
    const a = ancestors[i]!;
    if (attr(a, 'type') === 'NUMANode') return { node: parseDec(attr(a, 'os_index')), why: '' };
    if (v1) continue;
    const nodes = memoryNumaNodes(a);
    if (nodes.length === 1)
      return { node: nodes[0]! < 0 ? null : nodes[0]!, why: 'NUMANode has no os_index' };
    if (nodes.length > 1)
      return { node: null, why: `attached to a ${attr(a, 'type')} holding NUMA nodes ${nodes}` };
  }
  const parent = ancestors.at(-1);
  const below = parent ? descendantNumaNodes(parent) : [];
  const where = parent ? `attached to a ${attr(parent, 'type')}` : 'attached to no object';
  return { node: null, why: below.length > 0 ? `${where} local to NUMA nodes ${below}` : where };
}

function descendantNumaNodes(o: XmlElement): number[] {
  return children(o, 'object').flatMap((c) =>
    attr(c, 'type') === 'NUMANode' ? [parseDec(attr(c, 'os_index')) ?? -1] : descendantNumaNodes(c),
  );
}

/** "0302 [10de:1db8] [10de:131d] a1 00": 16-bit class, vendor:device, subsystem, revision, prog-if. */
function parsePciType(ctx: Ctx, s: string | undefined): PciIds | null {
  const re =
    /^\s*([0-9a-f]{4})\s+\[([0-9a-f]{4}):([0-9a-f]{4})\]\s+\[([0-9a-f]{4}):([0-9a-f]{4})\]\s+([0-9a-f]{2})(?:\s+([0-9a-f]{2}))?\s*$/i;
  const m = re.exec(s ?? '');
  if (!m) return null;
  const h = (i: number): number => Number.parseInt(m[i]!, 16);
  if (m[7] === undefined) ctx.withoutProgIf++;
  return {
    classCode: (h(1) << 8) | (m[7] === undefined ? 0 : h(7)),
    vendor: h(2),
    device: h(3),
    subsystemVendor: h(4),
    subsystemDevice: h(5),
    revision: h(6),
  };
}

function readLink(o: XmlElement): PcieLink | null {
  const gbps = Number.parseFloat(attr(o, 'pci_link_speed') ?? '');
  // hwloc writes 0 when the link speed is unknown.
  if (!(gbps > 0)) return null;
  return { speedGts: null, width: null, maxSpeedGts: null, maxWidth: null, bandwidthGBps: gbps };
}

function readPciObject(
  ctx: Ctx,
  o: XmlElement,
  parent: ParentRef,
  range: BusRange,
  numa: number | null,
): void {
  const type = attr(o, 'type');
  if (type === 'OSDev' || type === 'Misc') return;
  const bad = (why: string): TopologyError => new TopologyError(ctx.path, `${describe(o)}: ${why}`);
  if (!isPciType(type)) throw bad(`a ${type ?? 'untyped'} object cannot sit inside the PCI tree`);
  const isBridge = type === 'Bridge';
  if (isBridge && attr(o, 'bridge_type') !== '1-1') {
    throw bad(`bridge_type "${attr(o, 'bridge_type')}" inside ${range.owner}; only "1-1" PCI bridges nest`);
  }
  const addr = parseBdf(attr(o, 'pci_busid') ?? '');
  if (!addr) throw bad('pci_busid is missing or not a PCI address (want dddd:bb:dd.f)');
  const name = formatBdf(addr);
  const ids = parsePciType(ctx, attr(o, 'pci_type'));
  if (!ids) throw bad('pci_type is missing or not "CCSS [vvvv:dddd] [ssss:ssss] rr [pp]"');
  const inRange = addr.domain === range.domain && addr.bus >= range.first && addr.bus <= range.last;
  if (!keepDuplicate(ctx, o, name, inRange, range)) return;
  if (!inRange)
    ctx.notes.push(
      `${name} sits below ${range.owner}, outside its bus range ${fmtRange(range)}; hwloc's nesting is kept`,
    );
  const secondary = isBridge ? parseBusRange(attr(o, 'bridge_pci'), `bridge ${name}`) : null;
  if (isBridge && !secondary) throw bad('bridge_pci is missing or not "dddd:[bb-bb]"');
  const kids = children(o, 'object');
  ctx.functions.push({
    name,
    parent,
    ...ids,
    headerType: isBridge ? 1 : 0,
    portType: UNKNOWN,
    link: readLink(o),
    acs: UNKNOWN,
    sriov: UNKNOWN,
    secondaryBus: secondary?.first ?? null,
    subordinateBus: secondary?.last ?? null,
    numaNode: numa,
    osNames: kids.filter((k) => attr(k, 'type') === 'OSDev').flatMap((k) => attr(k, 'name') ?? []),
  });
  if (!secondary) {
    const pci = kids.find((k) => isPciType(attr(k, 'type')));
    if (pci) throw bad(`holds ${describe(pci)}, but only a bridge can have PCI children`);
    return;
  }
  for (const k of kids) readPciObject(ctx, k, { kind: 'bridge', name }, secondary, numa);
}

const fmtRange = (r: BusRange): string => {
  const hex = (n: number): string => n.toString(16).padStart(2, '0');
  return `${r.domain.toString(16).padStart(4, '0')}:[${hex(r.first)}-${hex(r.last)}]`;
};

/**
 * Decide between two PCI objects with one address. hwloc's own test files carry hand-added devices
 * (32em64t-2n8c2t-pci-wholeio.xml has a second 04:00.0 below a bridge whose range is [84-84]): when
 * exactly one copy lies inside its parent's bus range, that copy is the real one and the other is
 * dropped with a note. Any other duplicate is an error.
 * @returns whether the object `o` should be read.
 */
function keepDuplicate(ctx: Ctx, o: XmlElement, name: string, inRange: boolean, range: BusRange): boolean {
  const prev = ctx.seen.get(name);
  if (!prev) {
    ctx.seen.set(name, { inRange, element: o, owner: range.owner });
    return true;
  }
  const dup = `${name} appears twice (${describe(prev.element)} below ${prev.owner}; ${describe(o)} below ${range.owner})`;
  const prevIsLeaf = !ctx.functions.some((f) => f.parent.kind === 'bridge' && f.parent.name === name);
  if (prev.inRange && !inRange) {
    ctx.notes.push(`${dup}: the copy outside ${fmtRange(range)} is dropped`);
    return false;
  }
  if (!prev.inRange && inRange && prevIsLeaf) {
    ctx.notes.push(`${dup}: the copy outside its parent's bus range is dropped`);
    ctx.functions.splice(
      ctx.functions.findIndex((f) => f.name === name),
      1,
    );
    ctx.seen.set(name, { inRange, element: o, owner: range.owner });
    return true;
  }
  throw new TopologyError(ctx.path, `${dup}: two PCI objects have one address`);
}

/** Functions sharing a slot with another function, or with a nonzero function number, are multi-function. */
function markMultifunction(fs: readonly FunctionSpec[]): FunctionSpec[] {
  const slot = (n: string): string => n.slice(0, -2);
  const perSlot = new Map<string, number>();
  for (const f of fs) perSlot.set(slot(f.name), (perSlot.get(slot(f.name)) ?? 0) + 1);
  return fs.map((f) => ({
    ...f,
    multifunction: (perSlot.get(slot(f.name)) ?? 0) > 1 || !f.name.endsWith('.0'),
  }));
}

function countTypes(top: readonly XmlElement[]): Map<string, number> {
  const counts = new Map<string, number>();
  const visit = (o: XmlElement): void => {
    // hwloc v1 called a Package a Socket.
    const t = attr(o, 'type') === 'Socket' ? 'Package' : (attr(o, 'type') ?? '');
    counts.set(t, (counts.get(t) ?? 0) + 1);
    for (const c of children(o, 'object')) visit(c);
  };
  for (const o of top) visit(o);
  return counts;
}

function infos(o: XmlElement): Map<string, string> {
  return new Map(children(o, 'info').map((i) => [attr(i, 'name') ?? '', attr(i, 'value') ?? '']));
}

/** The first Package (or v1 Socket) that carries CPU identification, depth-first. */
function firstCpuPackage(objs: readonly XmlElement[]): XmlElement | undefined {
  for (const o of objs) {
    const t = attr(o, 'type');
    if ((t === 'Package' || t === 'Socket') && (infos(o).has('CPUVendor') || infos(o).has('CPUModel')))
      return o;
    const inner = firstCpuPackage(children(o, 'object'));
    if (inner) return inner;
  }
  return undefined;
}

/** CPU identity from Package (or Machine) info attributes; null when the XML names no CPU at all. */
function readCpu(
  top: readonly XmlElement[],
  machineInfo: ReadonlyMap<string, string>,
  packages: number,
  notes: string[],
): CpuInfo | null {
  const pkg = firstCpuPackage(top);
  const info = new Map([...machineInfo, ...(pkg ? infos(pkg) : [])]);
  const vendorId = info.get('CPUVendor');
  const modelName = info.get('CPUModel');
  const arch = info.get('Architecture');
  if (vendorId === undefined && modelName === undefined && arch === undefined) {
    notes.push('hwloc XML names no CPU (no CPUVendor, CPUModel or Architecture info): CPU unknown');
    return null;
  }
  const family = parseDec(info.get('CPUFamilyNumber'));
  const model = parseDec(info.get('CPUModelNumber'));
  const missing = [
    vendorId === undefined ? 'CPUVendor (vendor "")' : '',
    family === null ? 'CPUFamilyNumber (family 0)' : '',
    model === null ? 'CPUModelNumber (model 0)' : '',
    modelName === undefined ? 'CPUModel (name "")' : '',
    arch === undefined ? 'Architecture (arch "")' : '',
  ].filter((s) => s !== '');
  if (missing.length > 0) notes.push(`hwloc XML lacks CPU info ${missing.join(', ')}: recorded as unknown`);
  return {
    vendorId: vendorId ?? '',
    family: family ?? 0,
    model: model ?? 0,
    modelName: modelName ?? '',
    arch: arch ?? '',
    sockets: packages,
  };
}
