// The one merge rule every phyr builder and cursor applies: physically contiguous, same pgmap.
//
// Mirrors the scatterlist rule of lib/scatterlist.c (`pages_are_mergeable()`, 6.2+) and the bio rule
// of block/blk-merge.c: pages with different `struct dev_pagemap`s (for example a PCI BAR's P2P pages
// and ordinary RAM) are never described by one range, because each pgmap may need a different DMA
// mapping (bus address, host bridge, IOMMU).

import { type Bytes, type PhysAddr, physAddr } from '../../../hw/addr.js';
import type { PgmapOf } from '../phyr.js';

/** A physical range `[phys, phys + len)`. */
export interface PhysRange {
  readonly phys: PhysAddr;
  readonly len: Bytes;
}

/**
 * True when a range ending at `prevEnd` (exclusive) and a range starting at `nextPhys` may be one range.
 * Precondition: the previous range is not empty.
 */
export function phyrMergeable(prevEnd: bigint, nextPhys: bigint, pgmapOf: PgmapOf): boolean {
  if (prevEnd !== nextPhys) return false;
  return pgmapOf(physAddr(prevEnd - 1n)) === pgmapOf(physAddr(nextPhys));
}

/** The smaller of two bigints (Math.min does not take bigints). */
export const minBig = (a: bigint, b: bigint): bigint => (a < b ? a : b);
