// The PCIe fabric of a machine: one node per PCI function, a link (two directions) below every root
// port and switch downstream port, a crossbar per switch, a root complex per host bridge (with its
// crossbar, its IOMMU unit and its forwarding rule), a memory controller per NUMA node, and socket
// links between nodes. Memory with contents sits behind it: RAM per node and every memory BAR.
// Mirrors no kernel file; it is the hardware that drivers/pci enumerates.
//
//   node0 memory controller ── RC pci0000:00 ──(socket link)── RC pci0000:80 ── node1 memory
//                                 |  root bus: root ports, integrated endpoints
//                       root port 00:02.0
//                                 |  link (up, down)
//                       switch upstream 01:00.0 ── crossbar
//                         |                     |
//                 downstream 02:00.0     downstream 02:01.0
//                         |  link               |  link
//                      03:00.0 NVMe          04:00.0 GPU
//
// Link rates come from the negotiated speed and width (the lower of the two ends' link status),
// through the injected link-rate function; a link reported only in GB/s (hwloc) is scaled by the
// packet efficiency; an unreported link takes the default of params.ts.

import { bytes } from '../addr.js';
import { IommuUnit } from '../iommu/iommu.js';
import type { Machine, PciFunction } from '../pci.js';
import { AddressMap } from './address-map.js';
import type { DmaObserver, DmaStats } from './data-path.js';
import type { BwResource, FabricSim, PcieGenNumber, SimClock } from './flow-seam.js';
import { DEFAULT_FABRIC_PARAMS, type FabricParams } from './params.js';
import { type ForwardingRule, HOST_BRIDGE_FORWARDING, hostBridgeForwardingRule } from './platform.js';
import { type BridgeWindows, type BusRange, bridgeWindows } from './windows.js';

/** What a function is in the fabric (inferred from the tree when the port type was not readable). */
export type PortRole = 'root-port' | 'downstream' | 'upstream' | 'pci-bridge' | 'endpoint' | 'rc-endpoint';

export interface FabricLink {
  readonly name: string;
  /** The downstream-facing bridge the link hangs below (root port, downstream port, PCI bridge). */
  readonly port: PciFunction;
  readonly kind: 'pcie' | 'conventional';
  readonly gen: number | null;
  readonly width: number | null;
  readonly effectiveGBps: number;
  readonly rateSource: 'link-status' | 'bandwidth' | 'default';
  readonly up: BwResource;
  readonly down: BwResource;
  bytesUp: number;
  bytesDown: number;
}

export interface FabricSwitch {
  readonly name: string;
  readonly upstream: PciFunction;
  readonly res: BwResource;
  bytes: number;
}

export interface RootComplex {
  readonly name: string;
  readonly index: number;
  readonly node: number;
  readonly res: BwResource;
  /** The IOMMU unit translating requests that arrive here; null when DMA is not translated. */
  readonly iommu: IommuUnit | null;
  readonly forwarding: ForwardingRule;
  bytes: number;
}

export interface MemoryController {
  readonly node: number;
  readonly res: BwResource;
  bytes: number;
}

export interface SocketLink {
  readonly from: number;
  readonly to: number;
  readonly res: BwResource;
  bytes: number;
}

export interface FabricCounters {
  readonly rootComplexBytes: number;
  readonly hostMemoryBytes: number;
  readonly socketLinkBytes: number;
  readonly links: readonly { readonly name: string; readonly up: number; readonly down: number }[];
  readonly switches: readonly { readonly name: string; readonly bytes: number }[];
  readonly rootComplexes: readonly { readonly name: string; readonly bytes: number }[];
  readonly memory: readonly { readonly node: number; readonly bytes: number }[];
}

export interface FabricOptions {
  readonly params?: Partial<FabricParams>;
  /** Host-bridge forwarding table (platform.ts); the built-in table by default. */
  readonly forwarding?: readonly ForwardingRule[];
  /** Translate DMA through an IOMMU unit per root complex; default: the machine says an IOMMU is on. */
  readonly iommu?: boolean;
}

/** Role of a function, from its port type, or from the tree when that was not readable. */
export function portRole(f: PciFunction): PortRole {
  if (f.headerType === 0) return f.bridge === null ? 'rc-endpoint' : 'endpoint';
  const t = f.portType;
  if (t === 'root-port') return 'root-port';
  if (t === 'downstream-port') return 'downstream';
  if (t === 'upstream-port') return 'upstream';
  if (typeof t === 'string') return 'pci-bridge';
  if (f.bridge === null) return 'root-port';
  if (portRole(f.bridge) === 'upstream') return 'downstream';
  return f.children.some((c) => c.headerType === 1) ? 'upstream' : 'pci-bridge';
}

const GEN_BY_GTS: Readonly<Record<number, PcieGenNumber>> = { 2.5: 1, 5: 2, 8: 3, 16: 4, 32: 5, 64: 6 };

export class Fabric {
  readonly machine: Machine;
  readonly sim: FabricSim;
  readonly clock: SimClock;
  readonly params: FabricParams;
  readonly addressMap = new AddressMap();
  readonly links: FabricLink[] = [];
  readonly switches: FabricSwitch[] = [];
  readonly rootComplexes: RootComplex[] = [];
  readonly memoryControllers: MemoryController[] = [];
  readonly socketLinks: SocketLink[] = [];
  /** Invariant checkers and traces watching every DMA (data-path.ts). */
  readonly observers: DmaObserver[] = [];
  readonly dmaStats: DmaStats = { issued: 0, completed: 0, bytesMoved: 0, refused: {} };
  private readonly linkByPort = new Map<PciFunction, FabricLink>();
  private readonly switchByUsp = new Map<PciFunction, FabricSwitch>();
  private readonly windowsByBridge = new Map<PciFunction, BridgeWindows>();
  private readonly roles = new Map<PciFunction, PortRole>();

  constructor(machine: Machine, sim: FabricSim, opts: FabricOptions = {}) {
    this.machine = machine;
    this.sim = sim;
    this.clock = sim.flows.engine;
    this.params = { ...DEFAULT_FABRIC_PARAMS, ...opts.params };
    const p = this.params;
    const flows = sim.flows;
    const nodes = Math.max(
      1,
      machine.numaNodes ?? 1,
      ...machine.hostBridges.map((h) => (h.numaNode ?? 0) + 1),
    );
    for (let n = 0; n < nodes; n++)
      this.memoryControllers.push({
        node: n,
        res: flows.addResource(`memory node${n}`, p.memoryGBps, p.memoryLatencyNs),
        bytes: 0,
      });
    for (let a = 0; a < nodes; a++)
      for (let b = 0; b < nodes; b++)
        if (a !== b)
          this.socketLinks.push({
            from: a,
            to: b,
            res: flows.addResource(`socket link ${a}->${b}`, p.socketLinkGBps, p.socketLinkLatencyNs),
            bytes: 0,
          });
    const translate = opts.iommu ?? machine.iommu === true;
    for (const h of machine.hostBridges) {
      this.rootComplexes.push({
        name: h.name,
        index: h.index,
        node: h.numaNode ?? 0,
        res: flows.addResource(`root complex ${h.name}`, p.rootComplexGBps, p.rootComplexLatencyNs),
        iommu: translate
          ? new IommuUnit({ name: `iommu ${h.name}`, iotlb: { entries: p.iotlbEntries, ways: p.iotlbWays } })
          : null,
        forwarding: hostBridgeForwardingRule(machine, h, opts.forwarding ?? HOST_BRIDGE_FORWARDING),
        bytes: 0,
      });
    }
    for (const f of machine.functions) this.addFunction(f);
    this.addressMap.addBars(machine.functions);
    let next = 4n << 30n;
    for (let n = 0; n < nodes; n++) {
      if (n === 0) this.addressMap.addRam(0, 0n, bytes(2n << 30n), 'node0 RAM below 2 GiB');
      next = this.addressMap.addRam(n, next, bytes(p.ramBytesPerNode)).end;
    }
  }

  private addFunction(f: PciFunction): void {
    const role = portRole(f);
    this.roles.set(f, role);
    const p = this.params;
    const flows = this.sim.flows;
    if (role === 'upstream') {
      const sw: FabricSwitch = {
        name: `switch ${f.name}`,
        upstream: f,
        res: flows.addResource(`switch ${f.name}`, p.switchGBps, p.switchLatencyNs),
        bytes: 0,
      };
      this.switches.push(sw);
      this.switchByUsp.set(f, sw);
    }
    if (role === 'root-port' || role === 'downstream' || role === 'pci-bridge') {
      const rate = this.linkRateBelow(f, role === 'pci-bridge' ? 'conventional' : 'pcie');
      const name = `link ${f.name}`;
      const link: FabricLink = {
        name,
        port: f,
        kind: role === 'pci-bridge' ? 'conventional' : 'pcie',
        ...rate,
        up: flows.addResource(`${name} up`, rate.effectiveGBps, p.linkLatencyNs),
        down: flows.addResource(`${name} down`, rate.effectiveGBps, p.linkLatencyNs),
        bytesUp: 0,
        bytesDown: 0,
      };
      this.links.push(link);
      this.linkByPort.set(f, link);
    }
    if (f.headerType === 1 || f.headerType === 2) this.windowsByBridge.set(f, bridgeWindows(f));
  }

  /** Rate of the link below `port`: the lower of both ends' negotiated speed and width. */
  private linkRateBelow(
    port: PciFunction,
    kind: 'pcie' | 'conventional',
  ): Pick<FabricLink, 'gen' | 'width' | 'effectiveGBps' | 'rateSource'> {
    if (kind === 'conventional')
      return {
        gen: null,
        width: null,
        effectiveGBps: this.params.conventionalPciGBps,
        rateSource: 'default',
      };
    const ends = [port.link, port.children[0]?.link].filter((l) => l != null);
    const speeds = ends
      .map((l) => l.speedGts)
      .filter((v): v is number => v !== null && GEN_BY_GTS[v] !== undefined);
    const widths = ends.map((l) => l.width).filter((v): v is number => v !== null && v > 0);
    if (speeds.length > 0 && widths.length > 0) {
      const gen = GEN_BY_GTS[Math.min(...speeds)]!;
      const width = Math.min(...widths);
      return {
        gen,
        width,
        effectiveGBps: this.sim.linkRate(gen, width).effectiveGBps,
        rateSource: 'link-status',
      };
    }
    const bw = ends.map((l) => l.bandwidthGBps).filter((v): v is number => v !== undefined && v > 0);
    if (bw.length > 0) {
      const eff = this.sim.linkRate(4, 16).packetEfficiency;
      return { gen: null, width: null, effectiveGBps: Math.min(...bw) * eff, rateSource: 'bandwidth' };
    }
    const d = this.params.defaultLink;
    return { ...d, effectiveGBps: this.sim.linkRate(d.gen, d.width).effectiveGBps, rateSource: 'default' };
  }

  role(f: PciFunction): PortRole {
    const r = this.roles.get(f);
    if (!r) throw new Error(`fabric: ${f.name} is not a function of ${this.machine.name}`);
    return r;
  }

  /** The link below a root port, downstream port or PCI bridge; null for other functions. */
  linkBelow(port: PciFunction): FabricLink | null {
    return this.linkByPort.get(port) ?? null;
  }

  /** The link a function talks upstream on; null for functions on a root bus or a switch's internal bus. */
  linkAbove(f: PciFunction): FabricLink | null {
    return f.bridge ? this.linkBelow(f.bridge) : null;
  }

  switchOf(upstream: PciFunction): FabricSwitch | null {
    return this.switchByUsp.get(upstream) ?? null;
  }

  /** Memory windows of a bridge (empty for endpoints). */
  windows(bridge: PciFunction): readonly BusRange[] {
    return this.windowsByBridge.get(bridge)?.ranges ?? [];
  }

  windowSource(bridge: PciFunction): BridgeWindows['source'] | null {
    return this.windowsByBridge.get(bridge)?.source ?? null;
  }

  rootComplexOf(f: PciFunction): RootComplex {
    return this.rootComplexes[f.hostBridge.index]!;
  }

  /** The IOMMU unit that translates `f`'s DMA, or null when its DMA is not translated. */
  iommuFor(f: PciFunction): IommuUnit | null {
    return this.rootComplexOf(f).iommu;
  }

  /**
   * Attach every function that has no domain yet to an identity domain of its IOMMU unit (what
   * iommu=pt gives every device); the kernel model attaches its own domains instead.
   * @returns how many functions were attached.
   */
  attachIdentityDomains(): number {
    let n = 0;
    const ids = new Map<RootComplex, number>();
    for (const f of this.machine.functions) {
      const rc = this.rootComplexOf(f);
      if (!rc.iommu || rc.iommu.attachedDomain(f.name) !== null) continue;
      let id = ids.get(rc);
      if (id === undefined) {
        const got = rc.iommu.allocDomain('identity');
        if (got === null) throw new Error(`${rc.iommu.name}: out of domain ids`);
        id = got;
        ids.set(rc, id);
      }
      rc.iommu.attach(f.name, id);
      n++;
    }
    return n;
  }

  /** Byte counters of everything, for reports (root-complex and host-memory totals first). */
  counters(): FabricCounters {
    const sum = (xs: readonly { bytes: number }[]): number => xs.reduce((s, x) => s + x.bytes, 0);
    return {
      rootComplexBytes: sum(this.rootComplexes),
      hostMemoryBytes: sum(this.memoryControllers),
      socketLinkBytes: sum(this.socketLinks),
      links: this.links.map((l) => ({ name: l.name, up: l.bytesUp, down: l.bytesDown })),
      switches: this.switches.map((s) => ({ name: s.name, bytes: s.bytes })),
      rootComplexes: this.rootComplexes.map((r) => ({ name: r.name, bytes: r.bytes })),
      memory: this.memoryControllers.map((m) => ({ node: m.node, bytes: m.bytes })),
    };
  }

  memoryController(node: number): MemoryController {
    const m = this.memoryControllers[node];
    if (!m) throw new Error(`fabric: no NUMA node ${node}`);
    return m;
  }

  socketLink(from: number, to: number): SocketLink {
    const s = this.socketLinks.find((l) => l.from === from && l.to === to);
    if (!s) throw new Error(`fabric: no socket link ${from}->${to}`);
    return s;
  }
}

/**
 * Build the fabric of `machine` on the simulation objects in `sim` (see flow-seam.ts).
 * @returns the fabric; throws only on an inconsistent machine (overlapping RAM, a bad override).
 */
export const buildFabric = (machine: Machine, sim: FabricSim, opts: FabricOptions = {}): Fabric =>
  new Fabric(machine, sim, opts);
