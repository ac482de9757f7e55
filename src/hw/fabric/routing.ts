// Address routing of a DMA request through the PCIe fabric, as the hardware does it: up from the
// requester through bridge windows, peer to peer inside a switch when ACS allows, up to the root
// complex otherwise, through the IOMMU there, then to RAM or down to a peer BAR if the root complex
// forwards peer traffic. Mirrors no kernel file (it is what drivers/pci/p2pdma.c's distance and ACS
// checks try to predict); the ACS bits are those of include/uapi/linux/pci_regs.h.
//
//   requester
//     | link up
//   port P (root port / downstream port)  -- address inside P's own window? --+
//     |                                       UF set: forward upstream anyway  |  no UF: unsupported-request
//   switch internal bus -- a sibling port S claims the address?
//     |        yes: ingress port RR (request redirect) set -> continue upstream (redirected)
//     |             EC (egress control) set, no RR        -> acs-blocked
//     |             otherwise -> peer to peer: crossbar, down S's link, down to the BAR  [no RC bytes]
//     | no: forward upstream through the upstream port (unclaimed inside its window: unsupported-request)
//   ... (nested switches repeat the above)
//   root complex -- IOMMU: requester's domain translates? IOVA -> physical (fault: iommu-fault, no bytes)
//     |-- RAM of node n       -> [socket link] -> memory controller n
//     |-- BAR of a device     -> host-bridge forwarding rule (platform.ts) refuses? host-bridge-forwarding-refused
//     |                          else [socket link] [other root complex] down the windows to the BAR
//     `-- nothing             -> no-target
//
// Completions (read data) follow the request's path back, except that a peer read whose completer's
// port has CR (completion redirect) set returns through the root complex. Not modelled: SV (all
// requester IDs are valid here), TB (no ATS-translated requests), the egress-control vector (EC
// blocks every peer port), bus-master enable, and a function whose ACS capability was unreadable
// (routed as if it had none).

import { type Bytes, type DmaAddr, dmaAddr, hex } from '../addr.js';
import type { IommuFault } from '../iommu/iommu.js';
import type { PciFunction } from '../pci.js';
import { PCI_ACS_CR, PCI_ACS_EC, PCI_ACS_RR, PCI_ACS_UF } from '../pci-regs.js';
import type { Fabric, FabricSwitch, RootComplex } from './fabric.js';
import { climbHops, type Hop, type RouteLeg, reverseHops, type Target } from './hops.js';
import { hostBridgeForwards } from './platform.js';
import { rangesContain } from './windows.js';

export type { Hop, RouteLeg, Target } from './hops.js';

export type DmaKind = 'read' | 'write';

export type RefusalReason =
  | 'unsupported-request'
  | 'acs-blocked'
  | 'iommu-fault'
  | 'no-target'
  | 'host-bridge-forwarding-refused';

export interface RouteOk {
  readonly ok: true;
  readonly kind: DmaKind;
  readonly requester: PciFunction;
  readonly addr: DmaAddr;
  readonly len: number;
  /** Pieces of the request, each routed whole (split where a window, BAR or page mapping changes). */
  readonly legs: readonly RouteLeg[];
}

export interface RouteRefused {
  readonly ok: false;
  readonly reason: RefusalReason;
  readonly detail: string;
  /** Hops the request crossed before it was dropped (for the time the refusal takes). */
  readonly hops: readonly Hop[];
  readonly fault?: IommuFault;
}

export type RouteResult = RouteOk | RouteRefused;

const acsCtrl = (f: PciFunction): number => (f.acs.state === 'present' ? f.acs.ctrl : 0);

const refuse = (
  reason: RefusalReason,
  detail: string,
  hops: readonly Hop[],
  fault?: IommuFault,
): RouteRefused =>
  fault
    ? { ok: false, reason, detail, hops: [...hops], fault }
    : { ok: false, reason, detail, hops: [...hops] };

type Legs = RouteLeg[] | RouteRefused;

/** Does function `s` on a bus claim bus address `a` (a bridge by its windows, an endpoint by its BARs)? */
function claims(fab: Fabric, s: PciFunction, a: bigint): boolean {
  if (s.headerType === 1 || s.headerType === 2) return rangesContain(fab.windows(s), a);
  return fab.addressMap.barByBus(a)?.fn === s;
}

/**
 * Hops from `top` (a bridge that accepted bus address `a` from above, or the function itself) down
 * to the BAR holding `a`, checking every bridge's window on the way.
 */
function descend(fab: Fabric, top: PciFunction, a: bigint, hops: Hop[]): Target | RouteRefused {
  const bar = fab.addressMap.barByBus(a);
  if (!bar) return refuse('no-target', `no BAR holds bus address ${hex(a)} below ${top.name}`, hops);
  const chain: PciFunction[] = [];
  for (let f: PciFunction | null = bar.fn; f && f !== top; f = f.bridge) chain.unshift(f);
  if (bar.fn !== top && chain[0]?.bridge !== top)
    return refuse('no-target', `${bar.fn.name} (BAR at ${hex(a)}) is not below ${top.name}`, hops);
  for (const f of [top, ...chain]) {
    if (f === bar.fn) break;
    if (!rangesContain(fab.windows(f), a))
      return refuse('no-target', `${f.name} does not forward ${hex(a)} (outside its windows)`, hops);
    const role = fab.role(f);
    if (role === 'upstream') hops.push({ kind: 'switch', sw: fab.switchOf(f)! });
    else hops.push({ kind: 'link', link: fab.linkBelow(f)!, dir: 'down' });
  }
  return { kind: 'bar', bar, offset: Number(a - bar.busBase) };
}

/** Route one piece `[a, a + n)` that every bridge decodes the same way throughout. */
function routePiece(fab: Fabric, req: PciFunction, a: bigint, n: number, off: number, kind: DmaKind): Legs {
  const hops: Hop[] = [];
  let cur = req;
  let redirected = false;
  for (;;) {
    const parent = cur.bridge;
    if (parent === null) return atRootComplex(fab, req, a, n, off, kind, hops);
    const role = fab.role(parent);
    if (role === 'upstream') {
      const sw = fab.switchOf(parent)!;
      const ingressIsPort = fab.role(cur) === 'downstream';
      const peer = parent.children.find((s) => s !== cur && claims(fab, s, a));
      if (peer && !redirected) {
        const ctrl = ingressIsPort ? acsCtrl(cur) : 0;
        if (ctrl & PCI_ACS_RR) redirected = true;
        else if (ctrl & PCI_ACS_EC)
          return refuse('acs-blocked', `${cur.name} egress control blocks ${hex(a)} to ${peer.name}`, hops);
        else return peerLeg(fab, req, peer, sw, a, n, off, kind, hops);
      }
      if (!redirected && fab.addressMap.barByBus(a)?.fn === parent) {
        hops.push({ kind: 'switch', sw });
        const bar = fab.addressMap.barByBus(a)!;
        return [leg(off, n, hops, { kind: 'bar', bar, offset: Number(a - bar.busBase) }, 'peer', kind)];
      }
      if (!redirected && rangesContain(fab.windows(parent), a))
        return refuse('unsupported-request', `nothing below ${parent.name} claims ${hex(a)}`, hops);
      hops.push({ kind: 'switch', sw });
      cur = parent;
      continue;
    }
    if (role === 'pci-bridge') {
      // A conventional bus is shared: a peer on it claims the address before the bridge sees it.
      const peer = parent.children.find((s) => s !== cur && claims(fab, s, a));
      if (peer) {
        const busHops: Hop[] = [{ kind: 'link', link: fab.linkBelow(parent)!, dir: 'up' }];
        const t = descend(fab, peer, a, busHops);
        return 'ok' in t ? t : [leg(off, n, busHops, t, 'peer', kind)];
      }
    }
    hops.push({ kind: 'link', link: fab.linkBelow(parent)!, dir: 'up' });
    if (rangesContain(fab.windows(parent), a)) {
      // The address is below the port the request came up through: only UF sends it on upstream.
      if (role === 'pci-bridge' || !(acsCtrl(parent) & PCI_ACS_UF))
        return refuse(
          'unsupported-request',
          `${hex(a)} is below ${parent.name}, which does not forward it back`,
          hops,
        );
      redirected = true;
    }
    cur = parent;
  }
}

function leg(
  off: number,
  n: number,
  hops: Hop[],
  target: Target,
  via: RouteLeg['via'],
  kind: DmaKind,
): RouteLeg {
  return { offset: off, len: n, hops, target, via, completionHops: kind === 'read' ? reverseHops(hops) : [] };
}

/** A request routed peer to peer on a switch's internal bus, from ingress port `cur` to port `peer`. */
function peerLeg(
  fab: Fabric,
  req: PciFunction,
  peer: PciFunction,
  sw: FabricSwitch,
  a: bigint,
  n: number,
  off: number,
  kind: DmaKind,
  hops: Hop[],
): Legs {
  hops.push({ kind: 'switch', sw });
  const t = descend(fab, peer, a, hops);
  if ('ok' in t) return t;
  const l = leg(off, n, hops, t, 'peer', kind);
  if (kind !== 'read' || !(acsCtrl(peer) & PCI_ACS_CR) || fab.role(peer) !== 'downstream') return [l];
  // Completion redirect: the completion climbs from the completer to the root complex, which sends
  // it back down to the requester.
  const belowPeer = climbHops(fab, t.kind === 'bar' ? t.bar.fn : peer, peer);
  const upToRoot = climbHops(fab, sw.upstream, null);
  const rc: Hop = { kind: 'root-complex', rc: fab.rootComplexOf(req) };
  const back = reverseHops(climbHops(fab, req, null));
  return [{ ...l, completionHops: [...belowPeer, { kind: 'switch', sw }, ...upToRoot, rc, ...back] }];
}

function atRootComplex(
  fab: Fabric,
  req: PciFunction,
  a: bigint,
  n: number,
  off: number,
  kind: DmaKind,
  hops: Hop[],
): Legs {
  const rc = fab.rootComplexOf(req);
  hops.push({ kind: 'root-complex', rc });
  let ranges: readonly { phys: bigint; len: bigint }[] = [{ phys: a, len: BigInt(n) }];
  let space: 'bus' | 'cpu' = 'bus';
  if (rc.iommu) {
    const tr = rc.iommu.translate(req.name, dmaAddr(a), BigInt(n) as Bytes, kind);
    hops.push({ kind: 'iommu', rc, walkLevels: tr.walkLevels, iotlbMisses: tr.iotlbMisses });
    if (!tr.ok) {
      const f = tr.fault;
      return refuse(
        'iommu-fault',
        `${rc.iommu.name}: ${f.reason} ${f.access} at ${hex(f.iova)} by ${f.requester}`,
        hops,
        f,
      );
    }
    ranges = tr.ranges;
    space = 'cpu';
  }
  const legs: RouteLeg[] = [];
  let o = off;
  for (const r of ranges) {
    let p = r.phys;
    let left = Number(r.len);
    while (left > 0) {
      const got = decodeAtRoot(fab, rc, p, left, space, [...hops]);
      if (!Array.isArray(got)) return got;
      const [target, legHops, m, via] = got;
      legs.push(leg(o, m, legHops, target, via, kind));
      o += m;
      p += BigInt(m);
      left -= m;
    }
  }
  return legs;
}

const socketHop = (fab: Fabric, from: number, to: number): Hop => ({
  kind: 'socket-link',
  link: fab.socketLink(from, to),
  back: fab.socketLink(to, from),
});

type Decoded = [Target, Hop[], number, RouteLeg['via']];

/** Decode a (translated) address at root complex `rc`: RAM of a node, or a BAR; at most `left` bytes. */
function decodeAtRoot(
  fab: Fabric,
  rc: RootComplex,
  p: bigint,
  left: number,
  space: 'bus' | 'cpu',
  hops: Hop[],
): Decoded | RouteRefused {
  const am = fab.addressMap;
  const ram = am.ramAt(p);
  if (ram) {
    const m = Math.min(left, Number(ram.end - p));
    if (ram.node !== rc.node) hops.push(socketHop(fab, rc.node, ram.node));
    hops.push({ kind: 'memory-controller', mc: fab.memoryController(ram.node) });
    return [{ kind: 'ram', region: ram, offset: Number(p - ram.base) }, hops, m, 'root-complex'];
  }
  const bar = space === 'cpu' ? am.barByCpu(p) : am.barByBus(p);
  if (!bar) return refuse('no-target', `${rc.name}: nothing decodes ${space} address ${hex(p)}`, hops);
  const base = space === 'cpu' ? bar.cpuBase : bar.busBase;
  const m = Math.min(left, Number(base + bar.bar.size - p));
  const to = fab.rootComplexOf(bar.fn);
  if (!hostBridgeForwards(rc.forwarding.scope, to.forwarding.scope, rc === to))
    return refuse(
      'host-bridge-forwarding-refused',
      `${rc.name} (${rc.forwarding.name}) does not forward peer requests to ${bar.fn.name} below ${to.name}`,
      hops,
    );
  if (to !== rc) {
    if (to.node !== rc.node) hops.push(socketHop(fab, rc.node, to.node));
    hops.push({ kind: 'root-complex', rc: to });
  }
  const busAddr = bar.busBase + (p - base);
  let top: PciFunction = bar.fn;
  while (top.bridge) top = top.bridge;
  const t = descend(fab, top, busAddr, hops);
  if ('ok' in t) return t;
  return [t, hops, m, 'root-complex'];
}

/** Every window and BAR edge of the fabric, sorted: where the bus decode of an address can change. */
const edgeCache = new WeakMap<Fabric, bigint[]>();
function edges(fab: Fabric): bigint[] {
  let e = edgeCache.get(fab);
  if (!e) {
    const set = new Set<bigint>();
    for (const r of fab.addressMap.barBusRanges()) set.add(r.base).add(r.end);
    for (const f of fab.machine.functions) for (const r of fab.windows(f)) set.add(r.base).add(r.end);
    e = [...set].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    edgeCache.set(fab, e);
  }
  return e;
}

/**
 * Route a DMA of `len` bytes at `addr` (a bus address or an IOVA, as the device puts it on the wire)
 * by `requester`. IOMMU translation happens here (IOTLB fills, faults logged in the unit).
 * Precondition: `requester` is a function of the fabric's machine.
 * @returns the legs with their hops and targets, or a refusal:
 *   | reason                          | when                                                         |
 *   | unsupported-request             | the address is below the ingress port and UF is off; or a   |
 *   |                                 | bridge's window holds it but nothing below claims it        |
 *   | acs-blocked                     | a peer request meets ACS egress control (EC without RR)     |
 *   | iommu-fault                     | translation failed (not present, permission, no domain)     |
 *   | no-target                       | no RAM or BAR decodes the address, or a window is missing    |
 *   | host-bridge-forwarding-refused  | the root complex does not forward peer requests (platform)  |
 */
export function route(
  fab: Fabric,
  requester: PciFunction,
  addr: DmaAddr,
  len: Bytes,
  kind: DmaKind,
): RouteResult {
  const n = Number(len);
  const end = addr + len;
  const legs: RouteLeg[] = [];
  const cuts = edges(fab).filter((e) => e > addr && e < end);
  let a: bigint = addr;
  for (const c of [...cuts, end]) {
    if (c <= a) continue;
    const got = routePiece(fab, requester, a, Number(c - a), Number(a - addr), kind);
    if (!Array.isArray(got)) return got;
    legs.push(...got);
    a = c;
  }
  return { ok: true, kind, requester, addr, len: n, legs };
}
