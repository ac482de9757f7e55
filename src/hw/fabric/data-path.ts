// The data path: a device's DMA read or write executed over its routed hops as transfers on the
// bandwidth model, moving real bytes between the device's local buffer and the target memory when the
// last byte arrives, and counting bytes per link direction, switch, root complex, socket link and
// memory controller. Mirrors no kernel file: it is what the bus does with a device's DMA engine.
//
//   fabricDma(o)
//     route()  -- refused --> nothing moves; the reason comes back after the hops' round-trip latency
//       | ok
//     one flow per distinct path (legs to the same place share one), each starting after the request
//     latency (reads: the request's hops; all: IOMMU walks) and sharing bandwidth max-min
//       | all flows done
//     copy bytes leg by leg (reads: target -> local, writes: local -> target), count bytes, done(ok)
//
// Bytes move at completion, in one copy per leg (sparse copies cost nothing for never-written
// memory). A DMA is all or nothing: a refused or faulting request moves no byte.

import { type Bytes, bytes, type DmaAddr } from '../addr.js';
import type { IommuFault } from '../iommu/iommu.js';
import { copyMemory, type SparseMemory } from '../memory/sparse-memory.js';
import type { PciFunction } from '../pci.js';
import type { MmioHandler } from './address-map.js';
import type { Fabric } from './fabric.js';
import type { BwResource } from './flow-seam.js';
import { countHopBytes, type Hop, hopResource, type RouteLeg, type Target } from './hops.js';
import { type DmaKind, type RefusalReason, type RouteOk, type RouteRefused, route } from './routing.js';

/** The device side of a DMA: where read data lands, or where write data comes from. */
export type DevBuffer =
  | { readonly kind: 'bytes'; readonly bytes: Uint8Array }
  | { readonly kind: 'memory'; readonly mem: SparseMemory; readonly offset: number };

export interface DmaOptions {
  readonly requester: PciFunction;
  /** The address the device puts on the bus: a bus address, or an IOVA when its domain translates. */
  readonly addr: DmaAddr;
  readonly len: Bytes;
  readonly kind: DmaKind;
  readonly local: DevBuffer;
  /** The requester's own rate limit in GB/s (its DMA engine), if any. */
  readonly capBytesPerNs?: number;
  readonly label?: string;
}

export type DmaOutcome =
  | {
      readonly ok: true;
      readonly bytes: number;
      readonly startNs: number;
      readonly endNs: number;
      readonly route: RouteOk;
    }
  | {
      readonly ok: false;
      readonly reason: RefusalReason;
      readonly detail: string;
      readonly fault?: IommuFault;
      readonly startNs: number;
      readonly endNs: number;
    };

/** Sees every DMA (invariant checkers, traces); may not change anything. */
export interface DmaObserver {
  beforeMove?(o: DmaOptions, r: RouteOk): void;
  afterMove?(o: DmaOptions, r: RouteOk): void;
  refused?(o: DmaOptions, r: RouteRefused): void;
}

export interface DmaStats {
  issued: number;
  completed: number;
  bytesMoved: number;
  refused: Partial<Record<RefusalReason, number>>;
}

interface PathGroup {
  readonly path: BwResource[];
  readonly extraLatencyNs: number;
  size: number;
}

const hopLatency = (hops: readonly Hop[]): number => {
  let ns = 0;
  for (const h of hops) ns += hopResource(h)?.latencyNs ?? 0;
  return ns;
};

/** The resources of a hop list, each once (a crossbar crossed twice is one shared capacity). */
function uniqueResources(hops: readonly Hop[]): BwResource[] {
  const out: BwResource[] = [];
  for (const h of hops) {
    const r = hopResource(h);
    if (r && !out.includes(r)) out.push(r);
  }
  return out;
}

/** Group the legs of a route by data path: legs to the same place travel as one flow. */
function groupLegs(fab: Fabric, r: RouteOk): PathGroup[] {
  const groups = new Map<string, PathGroup>();
  for (const l of r.legs) {
    const data = r.kind === 'write' ? l.hops : l.completionHops;
    const path = uniqueResources(data);
    let walkNs = 0;
    for (const h of l.hops) if (h.kind === 'iommu') walkNs += h.walkLevels * fab.params.iommuWalkLevelNs;
    // A read waits for its request to reach the completer before data starts back.
    const extra = walkNs + (r.kind === 'read' ? hopLatency(l.hops) : 0);
    const key = `${extra}|${path.map((p) => p.name).join(',')}`;
    const g = groups.get(key);
    if (g) g.size += l.len;
    else groups.set(key, { path, extraLatencyNs: extra, size: l.len });
  }
  return [...groups.values()];
}

type Where = { mem: SparseMemory; offset: number } | { mmio: MmioHandler; offset: number };

function targetWhere(t: Target): Where {
  if (t.kind === 'ram') return { mem: t.region.mem, offset: t.offset };
  const b = t.bar.backing;
  return b.kind === 'memory' ? { mem: b.mem, offset: t.offset } : { mmio: b.mmio, offset: t.offset };
}

/** Move one leg's bytes between the device buffer and the target. */
function moveLeg(kind: DmaKind, local: DevBuffer, l: RouteLeg): void {
  const t = targetWhere(l.target);
  if (local.kind === 'memory' && 'mem' in t) {
    const lo = local.offset + l.offset;
    if (kind === 'read') copyMemory(local.mem, lo, t.mem, t.offset, l.len);
    else copyMemory(t.mem, t.offset, local.mem, lo, l.len);
    return;
  }
  const buf =
    local.kind === 'bytes'
      ? local.bytes.subarray(l.offset, l.offset + l.len)
      : local.mem.readBytes(local.offset + l.offset, l.len);
  if (kind === 'read') {
    if ('mem' in t) t.mem.read(t.offset, buf);
    else t.mmio.read(t.offset, buf);
    if (local.kind === 'memory') local.mem.write(local.offset + l.offset, buf);
  } else if ('mem' in t) t.mem.write(t.offset, buf);
  else t.mmio.write(t.offset, buf);
}

function finish(
  fab: Fabric,
  o: DmaOptions,
  r: RouteOk,
  startNs: number,
  done: (x: DmaOutcome) => void,
): void {
  for (const ob of fab.observers) ob.beforeMove?.(o, r);
  for (const l of r.legs) {
    moveLeg(o.kind, o.local, l);
    countHopBytes(o.kind === 'write' ? l.hops : l.completionHops, l.len);
  }
  for (const ob of fab.observers) ob.afterMove?.(o, r);
  fab.dmaStats.completed++;
  fab.dmaStats.bytesMoved += r.len;
  done({ ok: true, bytes: r.len, startNs, endNs: fab.clock.nowNs, route: r });
}

/**
 * Execute a device's DMA through the fabric; `done` runs (from the event loop, never synchronously)
 * when the last byte has moved or the request was refused.
 * Preconditions: the local buffer holds `len` bytes (a bytes buffer of exactly `len`).
 * @returns nothing; the outcome goes to `done`: ok with the route and times, or the refusal reason of
 *   route() (unsupported-request, acs-blocked, iommu-fault, no-target, host-bridge-forwarding-refused).
 */
export function fabricDma(fab: Fabric, o: DmaOptions, done: (x: DmaOutcome) => void): void {
  const n = Number(o.len);
  if (o.local.kind === 'bytes' && o.local.bytes.length !== n)
    throw new RangeError(`fabricDma: local buffer holds ${o.local.bytes.length} bytes, the DMA moves ${n}`);
  const startNs = fab.clock.nowNs;
  fab.dmaStats.issued++;
  const r = route(fab, o.requester, o.addr, o.len, o.kind);
  if (!r.ok) {
    fab.dmaStats.refused[r.reason] = (fab.dmaStats.refused[r.reason] ?? 0) + 1;
    for (const ob of fab.observers) ob.refused?.(o, r);
    // The request travels to where it is dropped and the error completion comes back.
    fab.clock.schedule(2 * hopLatency(r.hops), () => {
      const base = {
        ok: false as const,
        reason: r.reason,
        detail: r.detail,
        startNs,
        endNs: fab.clock.nowNs,
      };
      done(r.fault ? { ...base, fault: r.fault } : base);
    });
    return;
  }
  const groups = groupLegs(fab, r);
  if (groups.length === 0) {
    fab.clock.schedule(0, () => finish(fab, o, r, startNs, done));
    return;
  }
  let left = groups.length;
  for (const g of groups) {
    fab.sim.flows.startFlow({
      path: g.path,
      size: bytes(g.size),
      extraLatencyNs: g.extraLatencyNs,
      ...(o.capBytesPerNs !== undefined ? { capBytesPerNs: o.capBytesPerNs } : {}),
      label: o.label ?? `${o.requester.name} ${o.kind}`,
      onComplete: () => {
        if (--left === 0) finish(fab, o, r, startNs, done);
      },
    });
  }
}
