// The CPU physical address map of a machine: RAM per NUMA node (the e820/SRAT view), the PCI MMIO
// windows of each host bridge, and every memory BAR. It answers "what is at this address" for the
// page model (is this pfn RAM?) and for memremap's region_intersects() check (kernel/resource.c).
//
// When the machine does not describe its memory, an x86-like layout is made up:
//
//   0            0xa0000   0x100000            hole start            4 GiB
//   | RAM node 0 | legacy  | RAM node 0 ...     | 32-bit PCI hole      | RAM node 0 rest, node 1, ...
//                                                  (32-bit BARs)          skipping 64-bit BAR windows
//
// The hole starts at 2 GiB, or lower (256 MiB aligned) when a 32-bit BAR sits below 2 GiB. RAM above
// 4 GiB is laid out node after node and steps over every host-bridge window that lies in its way.
// BARs come from the machine as they are (cpuStart); functions without BARs have none here.

import { type Bytes, bytes, GiB, hex, MiB, type PhysAddr, physAddr } from '../../hw/addr.js';
import type { HostBridge, Machine, PciFunction } from '../../hw/pci.js';

export type PhysRegionKind = 'ram' | 'reserved' | 'pci-hole' | 'mmio-window' | 'bar';

export interface PhysRegion {
  readonly kind: PhysRegionKind;
  readonly start: PhysAddr;
  /** Last byte (inclusive, as `struct range` / `struct resource`). */
  readonly end: PhysAddr;
  /** NUMA node of RAM; the function's node for BARs; null when unknown. */
  readonly node: number | null;
  /** For BARs: the function and BAR number. */
  readonly fn: PciFunction | null;
  readonly bar: number | null;
  /** For windows: the host bridge. */
  readonly hostBridge: HostBridge | null;
  /** For reports: "System RAM", "0000:03:00.0 BAR 0", "pci0000:00 window". */
  readonly name: string;
}

/** RAM explicitly given by a caller (a machine file, a test) instead of the made-up layout. */
export interface RamRangeSpec {
  readonly start: PhysAddr;
  readonly size: Bytes;
  readonly node: number;
}

export interface PhysLayout {
  /** RAM per NUMA node for the default layout; default 16 GiB. */
  readonly ramPerNodeBytes?: Bytes | undefined;
  /** The RAM ranges; replaces the default layout entirely. */
  readonly ram?: readonly RamRangeSpec[] | undefined;
}

export interface PhysMap {
  /** RAM and reserved ranges, sorted, disjoint. */
  readonly ram: readonly PhysRegion[];
  /** The 32-bit hole and the host-bridge windows, sorted by start. */
  readonly windows: readonly PhysRegion[];
  /** Memory BARs, sorted by start. */
  readonly bars: readonly PhysRegion[];
  readonly nodes: number;
  /** What was skipped or adjusted while building (overlapping BARs, RAM moved around windows). */
  readonly notes: readonly string[];
  /** RAM as pfn intervals for allocation-free pfn tests: [first, last] pairs, sorted. */
  readonly ramPfnFirst: Float64Array;
  readonly ramPfnLast: Float64Array;
  readonly ramPfnNode: Int32Array;
}

export const DEFAULT_RAM_PER_NODE: Bytes = bytes(16n * GiB);
const FOUR_GIB = 4n * GiB;
const LEGACY_START = 0xa0000n;
const LEGACY_END = 0x100000n;
const DEFAULT_HOLE_START = 2n * GiB;

const alignDown = (v: bigint, a: bigint): bigint => v - (v % a);
const minB = (a: bigint, b: bigint): bigint => (a < b ? a : b);
const maxB = (a: bigint, b: bigint): bigint => (a > b ? a : b);
const alignUp = (v: bigint, a: bigint): bigint => alignDown(v + a - 1n, a);

function region(
  kind: PhysRegionKind,
  start: bigint,
  end: bigint,
  name: string,
  extra: Partial<Pick<PhysRegion, 'node' | 'fn' | 'bar' | 'hostBridge'>> = {},
): PhysRegion {
  return {
    kind,
    start: physAddr(start),
    end: physAddr(end),
    node: extra.node ?? null,
    fn: extra.fn ?? null,
    bar: extra.bar ?? null,
    hostBridge: extra.hostBridge ?? null,
    name,
  };
}

const byStart = (a: PhysRegion, b: PhysRegion): number =>
  a.start < b.start ? -1 : a.start > b.start ? 1 : 0;

/** Every memory BAR (I/O-port BARs are not in the physical address space), overlaps noted and dropped. */
function collectBars(machine: Machine, notes: string[]): PhysRegion[] {
  const all: PhysRegion[] = [];
  for (const f of machine.functions) {
    for (const b of f.bars) {
      if (b.kind === 'io' || b.size === 0n) continue;
      const what = b.index === 6 ? 'ROM' : `BAR ${b.index}`;
      all.push(
        region('bar', b.cpuStart, b.cpuStart + b.size - 1n, `${f.name} ${what}`, {
          fn: f,
          bar: b.index,
          node: f.numaNode,
        }),
      );
    }
  }
  all.sort(byStart);
  const kept: PhysRegion[] = [];
  for (const r of all) {
    const last = kept[kept.length - 1];
    if (last && r.start <= last.end) {
      notes.push(
        `${r.name} [${hex(r.start)}-${hex(r.end)}] overlaps ${last.name}: left out of the address map`,
      );
      continue;
    }
    kept.push(r);
  }
  return kept;
}

/** Per host bridge, the hull of its BARs below and above 4 GiB, rounded out to 1 MiB. */
function hostBridgeWindows(machine: Machine, bars: readonly PhysRegion[]): PhysRegion[] {
  const out: PhysRegion[] = [];
  for (const h of machine.hostBridges) {
    for (const high of [false, true]) {
      const mine = bars.filter((b) => b.fn?.hostBridge === h && b.start >= FOUR_GIB === high);
      if (mine.length === 0) continue;
      const lo = alignDown(
        mine.reduce<bigint>((m, b) => minB(m, b.start), mine[0]!.start),
        MiB,
      );
      const hi = alignUp(mine.reduce<bigint>((m, b) => maxB(m, b.end), mine[0]!.end) + 1n, MiB) - 1n;
      out.push(
        region('mmio-window', lo, hi, `${h.name} ${high ? '64-bit' : '32-bit'} window`, {
          hostBridge: h,
          node: h.numaNode,
        }),
      );
    }
  }
  return out.sort(byStart);
}

/** Number of NUMA nodes: the machine's count, else one more than the highest node a device names. */
function nodeCount(machine: Machine): number {
  if (machine.numaNodes !== null && machine.numaNodes > 0) return machine.numaNodes;
  const seen = [...machine.functions.map((f) => f.numaNode), ...machine.hostBridges.map((h) => h.numaNode)];
  return Math.max(0, ...seen.filter((n): n is number => n !== null && n >= 0)) + 1;
}

/** Lay RAM out node by node from `cursor`, stepping over `busy` intervals (sorted). */
function placeHighRam(
  cursor: bigint,
  perNode: readonly bigint[],
  busy: readonly PhysRegion[],
  out: PhysRegion[],
  notes: string[],
): void {
  let at = cursor;
  perNode.forEach((want, node) => {
    let left = want;
    while (left > 0n) {
      const next = busy.find((b) => b.end >= at);
      if (next && next.start <= at) {
        at = alignUp(next.end + 1n, GiB);
        notes.push(`RAM of node ${node} continues at ${hex(at)} after ${next.name}`);
        continue;
      }
      const room = next ? next.start - at : left;
      const take = minB(room, left);
      out.push(region('ram', at, at + take - 1n, 'System RAM', { node }));
      left -= take;
      at += take;
    }
  });
}

/** The made-up x86 layout: low RAM, legacy hole, 32-bit PCI hole, then RAM from 4 GiB. */
function defaultRam(
  machine: Machine,
  layout: PhysLayout,
  windows: PhysRegion[],
  bars: readonly PhysRegion[],
  notes: string[],
): PhysRegion[] {
  const nodes = nodeCount(machine);
  const perNode = layout.ramPerNodeBytes ?? DEFAULT_RAM_PER_NODE;
  const low32 = bars
    .filter((b) => b.start < FOUR_GIB)
    .reduce<bigint>((m, b) => minB(m, b.start), DEFAULT_HOLE_START);
  const holeStart = low32 < DEFAULT_HOLE_START ? alignDown(low32, 256n * MiB) : DEFAULT_HOLE_START;
  windows.push(region('pci-hole', holeStart, FOUR_GIB - 1n, 'PCI hole (32-bit MMIO)'));
  windows.sort(byStart);
  const ram: PhysRegion[] = [
    region('ram', 0n, LEGACY_START - 1n, 'System RAM', { node: 0 }),
    region('reserved', LEGACY_START, LEGACY_END - 1n, 'legacy VGA and BIOS'),
  ];
  if (holeStart > LEGACY_END) ram.push(region('ram', LEGACY_END, holeStart - 1n, 'System RAM', { node: 0 }));
  const lowBytes = holeStart - (LEGACY_END - LEGACY_START);
  const want = Array.from({ length: nodes }, (_, n) =>
    n === 0 ? (perNode > lowBytes ? perNode - lowBytes : 0n) : perNode,
  );
  placeHighRam(
    FOUR_GIB,
    want,
    windows.filter((w) => w.end >= FOUR_GIB),
    ram,
    notes,
  );
  return ram;
}

/** Explicit RAM: sorted and checked for overlaps (an overlap is a broken caller input: throws). */
function explicitRam(specs: readonly RamRangeSpec[]): PhysRegion[] {
  const ram = specs
    .filter((s) => s.size > 0n)
    .map((s) => region('ram', s.start, s.start + s.size - 1n, 'System RAM', { node: s.node }))
    .sort(byStart);
  ram.forEach((r, i) => {
    const prev = ram[i - 1];
    if (prev && r.start <= prev.end) throw new Error(`RAM ranges overlap at ${hex(r.start)}`);
  });
  return ram;
}

/**
 * Build the physical address map of a machine.
 * @returns the map; overlapping BARs (bad input) are left out and named in `notes`.
 * @throws when explicit RAM ranges overlap each other.
 */
export function buildPhysMap(machine: Machine, layout: PhysLayout = {}): PhysMap {
  const notes: string[] = [];
  const bars = collectBars(machine, notes);
  const windows = hostBridgeWindows(machine, bars);
  const ram = layout.ram ? explicitRam(layout.ram) : defaultRam(machine, layout, windows, bars, notes);
  const sysRam = ram.filter((r) => r.kind === 'ram');
  const shift = 12n;
  return {
    ram,
    windows,
    bars,
    nodes: layout.ram ? Math.max(0, ...layout.ram.map((r) => r.node)) + 1 : nodeCount(machine),
    notes,
    ramPfnFirst: Float64Array.from(sysRam, (r) => Number(r.start >> shift)),
    ramPfnLast: Float64Array.from(sysRam, (r) => Number(r.end >> shift)),
    ramPfnNode: Int32Array.from(sysRam, (r) => r.node ?? 0),
  };
}

/** Index of the last region starting at or below `addr`, or -1. */
function floorIndex(list: readonly PhysRegion[], addr: bigint): number {
  let lo = 0;
  let hi = list.length - 1;
  let ans = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]!.start <= addr) {
      ans = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return ans;
}

function findIn(list: readonly PhysRegion[], addr: bigint): PhysRegion | null {
  // Windows may nest (a host-bridge window inside the 32-bit hole), so walk back over earlier starts.
  for (let i = floorIndex(list, addr); i >= 0; i--) {
    const r = list[i]!;
    if (addr <= r.end) return r;
    if (r.kind === 'bar' || r.kind === 'ram' || r.kind === 'reserved') return null;
  }
  return null;
}

/** What is at `addr`: the most specific region (a BAR, then a window or the hole, then RAM). */
export function physMapLookup(map: PhysMap, addr: PhysAddr): PhysRegion | null {
  return findIn(map.bars, addr) ?? findIn(map.windows, addr) ?? findIn(map.ram, addr);
}

/** Index into the RAM pfn arrays of the range holding `pfn`, or -1 (allocation-free). */
export function ramIndexOfPfn(map: PhysMap, pfn: number): number {
  const first = map.ramPfnFirst;
  let lo = 0;
  let hi = first.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (first[mid]! <= pfn) {
      if (pfn <= map.ramPfnLast[mid]!) return mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return -1;
}

/** Is `pfn` a page of System RAM? */
export const pfnIsRam = (map: PhysMap, pfn: number): boolean => ramIndexOfPfn(map, pfn) >= 0;

/** `region_intersects()` for System RAM: how [start, start + size) meets RAM. */
export type RegionIntersects = 'disjoint' | 'intersects' | 'mixed';

/**
 * `region_intersects(start, size, IORESOURCE_SYSTEM_RAM, IORES_DESC_NONE)`.
 * @returns 'intersects' when the range is all RAM, 'mixed' when partly, 'disjoint' when not at all.
 */
export function regionIntersectsRam(map: PhysMap, start: PhysAddr, size: Bytes): RegionIntersects {
  if (size === 0n) return 'disjoint';
  const end = start + size - 1n;
  let covered = 0n;
  for (const r of map.ram) {
    if (r.kind !== 'ram' || r.end < start || r.start > end) continue;
    const lo = maxB(r.start, start);
    const hi = minB(r.end, end);
    covered += hi - lo + 1n;
  }
  if (covered === 0n) return 'disjoint';
  return covered === size ? 'intersects' : 'mixed';
}

/** Total System RAM per node, for reports. */
export function ramPerNode(map: PhysMap): Bytes[] {
  const out = Array.from({ length: map.nodes }, () => 0n);
  for (const r of map.ram)
    if (r.kind === 'ram') out[r.node ?? 0] = (out[r.node ?? 0] ?? 0n) + (r.end - r.start + 1n);
  return out.map((b) => bytes(b));
}
