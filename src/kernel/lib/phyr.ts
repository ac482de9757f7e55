// phyr: physical range lists behind one read-only cursor — the "non-leaky phyr API" of the 2023
// Physr discussion (seeds 000/002, reference §6).
//
// There is no phyr in mainline; the closest relatives are `struct bio_vec`, `struct phys_vec`
// (block/blk-mq-dma.c, drivers/dma-buf/dma-buf-mapping.c) and Jason Gunthorpe's rlist prototype.
// The idea modelled here: the CPU side (what to map) and the DMA side (what the device got) are
// separate lists, and the CPU side may be stored in several layouts that a DMA mapping
// implementation never sees — it consumes a `PhyrCursor` only:
//
//   layout      bytes/entry  stores                                  folder
//   ranges16    16           {phys u64, len u64} per range           phyr/ranges16.ts
//   pages8       8           (pfn << 12 | flags) per page + head/len  phyr/pages8.ts
//   single       -           one {phys, len}                          phyr/single.ts
//
// Every layout's cursor yields the same ranges for the same data: maximal physically contiguous
// runs that never cross a pgmap boundary (the rule of `zone_device_pages_have_same_pgmap()`:
// two addresses may merge when both have no pgmap, or both have the same pgmap). The DMA output
// side is `DmaRangeList` ({dma, len}, phyr/dma-range-list.ts).

import type { Bytes, PhysAddr } from '../../hw/addr.js';
import type { KResult } from '../errno.js';
import type { PhysRange } from './phyr/merge.js';
import { phyrPages8FromRanges } from './phyr/pages8.js';
import { phyrRanges16FromRanges } from './phyr/ranges16.js';
import { phyrSingleFromRanges } from './phyr/single.js';

export type { PhysRange } from './phyr/merge.js';

/** The storage layouts (for reports and for choosing a builder; shared code never branches on it). */
export type PhyrLayout = 'ranges16' | 'pages8' | 'single';

/**
 * The pgmap of the memory at `phys`: an id >= 0 for ZONE_DEVICE memory (one id per
 * `struct dev_pagemap`), -1 for memory without one. Provided by the mm layer.
 */
export type PgmapOf = (phys: PhysAddr) => number;

/** Memory without any pgmap (the builders' default `pgmapOf`). */
export const NO_PGMAP: PgmapOf = () => -1;

/**
 * Read-only cursor over the ranges of a list, positioned on the first range when created.
 * `phys` and `len` describe the current range while `done` is false.
 */
export interface PhyrCursor {
  readonly done: boolean;
  readonly phys: PhysAddr;
  readonly len: Bytes;
  /** Move to the next range (sets `done` after the last). Calling it when done is a bug: throws. */
  advance(): void;
}

/** A CPU-side physical range list in one of the layouts. */
export interface PhyrList {
  readonly layout: PhyrLayout;
  /** Stored entries (ranges, pages or 1); the cursor yields at most this many ranges. */
  readonly entryCount: number;
  /** Sum of the lengths of all ranges. */
  totalLen(): Bytes;
  /** A fresh cursor on the first range. */
  cursor(): PhyrCursor;
  /**
   * The bytes [offset, offset + len) of this list, in the same layout.
   * Precondition: offset + len <= totalLen() (otherwise a bug: throws RangeError).
   */
  slice(offset: Bytes, len: Bytes): PhyrList;
  /** Bytes held by the list's storage (typed-array byteLength; 16 for a single range). */
  bytesUsed(): number;
}

/** How a layout is built from generic ranges (each layout declares its own answer). */
export interface PhyrLayoutOps {
  /**
   * Build from ranges in order, merging contiguous neighbours unless their pgmaps differ.
   * @returns ok, or EINVAL when the data cannot be held by this layout (pages8: ranges not page
   *   structured; single: more than one range after merging).
   */
  fromRanges(ranges: Iterable<PhysRange>, pgmapOf: PgmapOf): KResult<PhyrList>;
}

export const PHYR_LAYOUTS: Readonly<Record<PhyrLayout, PhyrLayoutOps>> = {
  ranges16: { fromRanges: (r, p) => phyrRanges16FromRanges(r, p) },
  pages8: { fromRanges: phyrPages8FromRanges },
  single: { fromRanges: phyrSingleFromRanges },
};

/**
 * Build a list of the given layout from ranges.
 * @returns as `PhyrLayoutOps.fromRanges` of that layout (EINVAL when the layout cannot hold the data).
 */
export function phyrFromRanges(
  layout: PhyrLayout,
  ranges: Iterable<PhysRange>,
  pgmapOf: PgmapOf = NO_PGMAP,
): KResult<PhyrList> {
  return PHYR_LAYOUTS[layout].fromRanges(ranges, pgmapOf);
}

/** Every range of a cursor, in order (tests, reports and small lists). */
export function phyrCursorToArray(c: PhyrCursor): PhysRange[] {
  const out: PhysRange[] = [];
  for (; !c.done; c.advance()) out.push({ phys: c.phys, len: c.len });
  return out;
}

/** Re-store a list in another layout. @returns as `phyrFromRanges` of the target layout. */
export function phyrConvert(list: PhyrList, to: PhyrLayout, pgmapOf: PgmapOf = NO_PGMAP): KResult<PhyrList> {
  return phyrFromRanges(to, phyrCursorToArray(list.cursor()), pgmapOf);
}

export { ChunkedU64 } from './phyr/chunked-u64.js';
export { type DmaRange, type DmaRangeCursor, DmaRangeList } from './phyr/dma-range-list.js';
export { minBig, phyrMergeable } from './phyr/merge.js';
export { PHYR_PAGE_BREAK, PhyrPages8, PhyrPages8Builder, phyrPages8FromPfns } from './phyr/pages8.js';
export { PhyrRanges16, PhyrRanges16Builder, phyrRanges16Build } from './phyr/ranges16.js';
export { PhyrSingle } from './phyr/single.js';
