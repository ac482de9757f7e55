// Memory windows of PCI-PCI bridges: the bus-address ranges a bridge forwards from its primary side
// down to its secondary side (and, seen from below, the ranges it does NOT forward upstream).
//
// Mirrors the reads of drivers/pci/probe.c (`pci_read_bridge_mmio`, `pci_read_bridge_mmio_pref`):
//
//   0x20 Memory Base   [15:4] = address bits 31:20     0x22 Memory Limit  (limit | 0xfffff)
//   0x24 Pref. Base    [15:4] = address bits 31:20,    [3:0] = 1: 64-bit, upper bits at 0x28
//   0x26 Pref. Limit   [15:4] = address bits 31:20,    upper bits at 0x2c
//
// A window is open when base <= limit. When a function carries no config bytes (hwloc or NCCL XML
// machines), the window is the union of the bus ranges of every memory BAR below the bridge: what
// firmware would have programmed to cover them.

import type { PciFunction } from '../pci.js';

/** A half-open range [base, end) of bus addresses. */
export interface BusRange {
  readonly base: bigint;
  readonly end: bigint;
}

export interface BridgeWindows {
  readonly ranges: readonly BusRange[];
  /** Where the ranges came from: the bridge's base/limit registers, or its descendants' BARs. */
  readonly source: 'config' | 'descendants';
}

const PCI_MEMORY_BASE = 0x20;
const PCI_MEMORY_LIMIT = 0x22;
const PCI_PREF_MEMORY_BASE = 0x24;
const PCI_PREF_MEMORY_LIMIT = 0x26;
const PCI_PREF_BASE_UPPER32 = 0x28;
const PCI_PREF_LIMIT_UPPER32 = 0x2c;
const PCI_MEMORY_RANGE_MASK = 0xfff0;
const PCI_PREF_RANGE_TYPE_MASK = 0x0f;
const PCI_PREF_RANGE_TYPE_64 = 0x01;

const rd16 = (c: Uint8Array, o: number): number => c[o]! | (c[o + 1]! << 8);
const rd32 = (c: Uint8Array, o: number): bigint => BigInt((rd16(c, o) | (rd16(c, o + 2) << 16)) >>> 0);

/**
 * `pci_read_bridge_mmio()`: the non-prefetchable window from config bytes.
 * @returns the range, or null when the window is closed (base > limit).
 */
export function pciReadBridgeMmio(config: Uint8Array): BusRange | null {
  const base = BigInt(rd16(config, PCI_MEMORY_BASE) & PCI_MEMORY_RANGE_MASK) << 16n;
  const limit = (BigInt(rd16(config, PCI_MEMORY_LIMIT) & PCI_MEMORY_RANGE_MASK) << 16n) | 0xfffffn;
  return base <= limit ? { base, end: limit + 1n } : null;
}

/**
 * `pci_read_bridge_mmio_pref()`: the prefetchable window, 64-bit when the type bits say so.
 * @returns the range, or null when the window is closed.
 */
export function pciReadBridgeMmioPref(config: Uint8Array): BusRange | null {
  const baseLo = rd16(config, PCI_PREF_MEMORY_BASE);
  const limitLo = rd16(config, PCI_PREF_MEMORY_LIMIT);
  let base = BigInt(baseLo & PCI_MEMORY_RANGE_MASK) << 16n;
  let limit = (BigInt(limitLo & PCI_MEMORY_RANGE_MASK) << 16n) | 0xfffffn;
  if ((baseLo & PCI_PREF_RANGE_TYPE_MASK) === PCI_PREF_RANGE_TYPE_64) {
    base |= rd32(config, PCI_PREF_BASE_UPPER32) << 32n;
    limit |= rd32(config, PCI_PREF_LIMIT_UPPER32) << 32n;
  }
  return base <= limit ? { base, end: limit + 1n } : null;
}

/** Sort and merge overlapping or touching ranges; empty ranges are dropped. */
export function mergeRanges(list: readonly BusRange[]): BusRange[] {
  const sorted = list
    .filter((r) => r.end > r.base)
    .sort((a, b) => (a.base < b.base ? -1 : a.base > b.base ? 1 : 0));
  const out: BusRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.base <= last.end) {
      if (r.end > last.end) out[out.length - 1] = { base: last.base, end: r.end };
    } else out.push(r);
  }
  return out;
}

/** Bus ranges of a function's memory BARs (I/O BARs are not memory space). */
export function barBusRanges(f: PciFunction): BusRange[] {
  return f.bars
    .filter((b) => b.kind !== 'io' && b.size > 0n)
    .map((b) => ({ base: b.busStart, end: b.busStart + b.size }));
}

/** Union of the memory BARs of every function below bridge `f` (not `f`'s own BARs). */
export function descendantBarRanges(f: PciFunction): BusRange[] {
  const all: BusRange[] = [];
  const walk = (n: PciFunction): void => {
    for (const c of n.children) {
      all.push(...barBusRanges(c));
      walk(c);
    }
  };
  walk(f);
  return mergeRanges(all);
}

/**
 * The memory windows of bridge `f`: from its base/limit registers when its config bytes reach them,
 * else the union of its descendants' BARs.
 * @returns the windows and where they came from; no errno (a closed window is an empty list).
 */
export function bridgeWindows(f: PciFunction): BridgeWindows {
  const c = f.config;
  if (c && c.length >= PCI_PREF_LIMIT_UPPER32 + 4) {
    const ranges = [pciReadBridgeMmio(c), pciReadBridgeMmioPref(c)].filter((r): r is BusRange => r !== null);
    return { ranges: mergeRanges(ranges), source: 'config' };
  }
  return { ranges: descendantBarRanges(f), source: 'descendants' };
}

/** Does any range hold `addr`? */
export function rangesContain(ranges: readonly BusRange[], addr: bigint): boolean {
  for (const r of ranges) if (addr >= r.base && addr < r.end) return true;
  return false;
}

/**
 * Where inside (addr, end) the answer of `rangesContain` can change: every range edge strictly
 * between the two. A request is split there, so each piece is routed the same way throughout.
 */
export function rangeEdgesWithin(ranges: readonly BusRange[], addr: bigint, end: bigint): bigint[] {
  const out: bigint[] = [];
  for (const r of ranges) {
    if (r.base > addr && r.base < end) out.push(r.base);
    if (r.end > addr && r.end < end) out.push(r.end);
  }
  return out;
}
