// Scatterlists: `struct scatterlist`, `struct sg_table`, chained chunk allocation and the
// page-array builders of lib/scatterlist.c and include/linux/scatterlist.h.
//
// An entry here is a small object with the fields of the C struct; `page_link`'s three meanings are
// split into `pfn` (the page; null for a DMA-only entry such as a dma-buf MMIO export), `end`
// (SG_END, bit 1) and `chain` (SG_CHAIN, bit 0: the slot links to the next chunk). Chunks are arrays
// of at most SG_MAX_SINGLE_ALLOC entries; a chunk that is followed by another gives up its last slot
// to the chain link, which is why `total_nents` can exceed `orig_nents`:
//
//   chunk 0: [e0][e1] ... [e126][chain] ──> chunk 1: [e127][e128] ... [end] [unused]
//
// The page-array builders follow `sg_alloc_append_table_from_pages()` line by line, including its
// quirks (the append merge ignores `size`; `size` wraps as an unsigned long). The profile decides
// the merge rule: 6.1 merges on pfn contiguity alone, 6.2+ also requires the same pgmap
// (`zone_device_pages_have_same_pgmap()`).

import {
  type Bytes,
  type DmaAddr,
  dmaAddr,
  PAGE_SHIFT,
  PAGE_SIZE,
  type PhysAddr,
  physAddr,
} from '../../hw/addr.js';
import { err, type KResult, ok } from '../errno.js';
import type { KernelLog } from '../printk.js';
import type { KernelVersion } from '../profile.js';
import { NO_PGMAP, type PgmapOf } from './phyr.js';

/** `PAGE_SIZE / sizeof(struct scatterlist)`: 4096 / 32 on x86-64 with DMA length and flags. */
export const SG_MAX_SINGLE_ALLOC = 128;
/** `sg_dma_mark_bus_address()`: the segment holds a PCI bus address (P2P BUS_ADDR); unmap skips it. */
export const SG_DMA_BUS_ADDRESS = 1 << 0;
/** 6.4+: dma-iommu mapped this list through swiotlb (set on the first entry). */
export const SG_DMA_SWIOTLB = 1 << 1;
/** `UINT_MAX`, the `max_segment` of `sg_alloc_table_from_pages()`. */
export const UINT_MAX = 0xffff_ffff;

/** One `struct scatterlist`. */
export interface Scatterlist {
  /** The page (its pfn), or null: no page (DMA-only entry, or an unused/chain slot). */
  pfn: number | null;
  offset: number;
  length: number;
  dmaAddress: DmaAddr;
  dmaLength: number;
  dmaFlags: number;
  /** SG_END: the last entry of the list. */
  end: boolean;
  /** SG_CHAIN: this slot is a link to `chain`'s first entry, not data. */
  chain: Scatterlist[] | null;
  /** The chunk holding this entry and the entry's index in it (what `sg + 1` means in C). */
  readonly chunk: Scatterlist[];
  readonly slot: number;
}

/** `struct sg_table`. */
export interface SgTable {
  sgl: Scatterlist | null;
  /** Entries after DMA mapping (the mapped count; may be < origNents after IOMMU merging). */
  nents: number;
  /** CPU entries. */
  origNents: number;
}

/** `struct sg_append_table`. */
export interface SgAppendTable {
  sgt: SgTable;
  /** Last populated entry. */
  prv: Scatterlist | null;
  /** Allocated entries including chain slots. */
  totalNents: number;
}

export const newSgTable = (): SgTable => ({ sgl: null, nents: 0, origNents: 0 });
export const newSgAppendTable = (): SgAppendTable => ({ sgt: newSgTable(), prv: null, totalNents: 0 });

/** How scatterlist allocation behaves in this model run. */
export interface SgOptions {
  readonly version: KernelVersion;
  /** pgmap of a page (the 6.2+ merge rule); default: no page has a pgmap. */
  readonly pgmapOf?: PgmapOf | undefined;
  /** CONFIG_ARCH_NO_SG_CHAIN (no x86 kernel sets it). */
  readonly archNoSgChain?: boolean | undefined;
  /** Fault seam: true fails the allocation of a chunk of `nents` entries (GFP failure). */
  readonly allocFails?: ((nents: number) => boolean) | undefined;
  /** Where WARN_ON lines go. */
  readonly log?: Pick<KernelLog, 'printk'> | undefined;
}

/** A chunk of `n` cleared entries with the last marked end (`sg_kmalloc()` + `sg_init_table()`). */
function sgInitChunk(n: number): Scatterlist[] {
  const chunk: Scatterlist[] = [];
  for (let slot = 0; slot < n; slot++) {
    chunk.push({
      pfn: null,
      offset: 0,
      length: 0,
      dmaAddress: dmaAddr(0),
      dmaLength: 0,
      dmaFlags: 0,
      end: slot === n - 1,
      chain: null,
      chunk,
      slot,
    });
  }
  return chunk;
}

/** `sg_is_last()`. */
export const sgIsLast = (sg: Scatterlist): boolean => sg.end;
/** `sg_is_chain()`. */
export const sgIsChain = (sg: Scatterlist): boolean => sg.chain !== null;

/** `sg_next()`: the following entry, through a chain link; null after the last entry. */
export function sgNext(sg: Scatterlist): Scatterlist | null {
  if (sg.end) return null;
  const next = sg.chunk[sg.slot + 1];
  if (next === undefined) throw new Error('BUG: sg_next() ran off a chunk without an end mark');
  return next.chain !== null ? next.chain[0]! : next;
}

/** `sg_mark_end()`: make `sg` the last entry. */
export function sgMarkEnd(sg: Scatterlist): void {
  sg.end = true;
  sg.chain = null;
}

/** `__sg_chain()`: turn `slot` into a link to `chunk`. */
function sgChain(slot: Scatterlist, chunk: Scatterlist[]): void {
  slot.offset = 0;
  slot.length = 0;
  slot.pfn = null;
  slot.chain = chunk;
  slot.end = false;
}

/** `sg_set_page()`: point `sg` at `length` bytes of page `pfn` from `offset`. */
export function sgSetPage(sg: Scatterlist, pfn: number | null, length: number, offset: number): void {
  sg.pfn = pfn;
  sg.offset = offset;
  sg.length = length;
}

/** `sg_phys()`: CPU physical address of the entry's data. Precondition: the entry has a page. */
export function sgPhys(sg: Scatterlist): PhysAddr {
  if (sg.pfn === null) throw new Error('BUG: sg_phys() of an entry without a page');
  return physAddr((BigInt(sg.pfn) << BigInt(PAGE_SHIFT)) + BigInt(sg.offset));
}

/** `sg_dma_address()`. */
export const sgDmaAddress = (sg: Scatterlist): DmaAddr => sg.dmaAddress;
/** `sg_dma_len()`. */
export const sgDmaLen = (sg: Scatterlist): number => sg.dmaLength;

/** 6.4+ `sg_dma_is_bus_address()`. */
export const sgDmaIsBusAddress = (sg: Scatterlist): boolean => (sg.dmaFlags & SG_DMA_BUS_ADDRESS) !== 0;
/** 6.1 `sg_is_dma_bus_address()` (renamed `sg_dma_is_bus_address()` in 6.4; same test). */
export const sgIsDmaBusAddress = sgDmaIsBusAddress;
/** `sg_dma_mark_bus_address()`. */
export const sgDmaMarkBusAddress = (sg: Scatterlist): void => {
  sg.dmaFlags |= SG_DMA_BUS_ADDRESS;
};
/** `sg_dma_unmark_bus_address()`. */
export const sgDmaUnmarkBusAddress = (sg: Scatterlist): void => {
  sg.dmaFlags &= ~SG_DMA_BUS_ADDRESS;
};
/** 6.4+ `sg_dma_is_swiotlb()`. */
export const sgDmaIsSwiotlb = (sg: Scatterlist): boolean => (sg.dmaFlags & SG_DMA_SWIOTLB) !== 0;
/** 6.4+ `sg_dma_mark_swiotlb()`. */
export const sgDmaMarkSwiotlb = (sg: Scatterlist): void => {
  sg.dmaFlags |= SG_DMA_SWIOTLB;
};

/** The C names of the bus-address test per profile (for reports quoting kernel source). */
export const SG_BUS_ADDRESS_HELPER: Readonly<Record<KernelVersion, string>> = {
  '6.1': 'sg_is_dma_bus_address',
  newest: 'sg_dma_is_bus_address',
};

/** `for_each_sg()`: the first `nents` entries from `sgl`. */
export function* forEachSg(sgl: Scatterlist | null, nents: number): Generator<Scatterlist> {
  let sg = sgl;
  for (let i = 0; i < nents && sg !== null; i++) {
    yield sg;
    if (i + 1 < nents) sg = sgNext(sg);
  }
}

/** `for_each_sgtable_sg()`: the CPU entries (orig_nents). */
export const forEachSgtableSg = (sgt: SgTable): Generator<Scatterlist> => forEachSg(sgt.sgl, sgt.origNents);
/** `for_each_sgtable_dma_sg()`: the DMA-mapped entries (nents). */
export const forEachSgtableDmaSg = (sgt: SgTable): Generator<Scatterlist> => forEachSg(sgt.sgl, sgt.nents);

/**
 * `sg_alloc_table()` (`__sg_alloc_table()` with SG_MAX_SINGLE_ALLOC chunks): `nents` cleared entries,
 * chained when more than one chunk is needed.
 * @returns ok; EINVAL for nents == 0 or (no chaining) nents > SG_MAX_SINGLE_ALLOC; ENOMEM when a
 *   chunk allocation fails (the table is freed, as `sg_alloc_table()` does).
 */
export function sgAllocTable(sgt: SgTable, nents: number, opts: SgOptions): KResult<void> {
  Object.assign(sgt, newSgTable());
  if (nents === 0) return err('EINVAL', 'sg_alloc_table: nents is 0');
  if (opts.archNoSgChain && nents > SG_MAX_SINGLE_ALLOC) {
    return err('EINVAL', `sg_alloc_table: ${nents} entries need chaining (CONFIG_ARCH_NO_SG_CHAIN)`);
  }
  let left = nents;
  let prv: Scatterlist[] | null = null;
  do {
    let allocSize = left;
    let sgSize = left;
    if (allocSize > SG_MAX_SINGLE_ALLOC) {
      allocSize = SG_MAX_SINGLE_ALLOC;
      sgSize = allocSize - 1;
    }
    left -= sgSize;
    if (opts.allocFails?.(allocSize)) {
      sgFreeTable(sgt);
      return err('ENOMEM', `sg_alloc_table: chunk of ${allocSize} entries`);
    }
    const chunk = sgInitChunk(allocSize);
    sgt.nents = sgt.origNents += sgSize;
    if (prv !== null) sgChain(prv[SG_MAX_SINGLE_ALLOC - 1]!, chunk);
    else sgt.sgl = chunk[0]!;
    if (left === 0) sgMarkEnd(chunk[sgSize - 1]!);
    prv = chunk;
  } while (left > 0);
  return ok(undefined);
}

/** `sg_free_table()`: drop the entries (the model has no memory to return). */
export function sgFreeTable(sgt: SgTable): void {
  sgt.sgl = null;
  sgt.nents = 0;
  sgt.origNents = 0;
}

/** `sg_free_append_table()`. */
export function sgFreeAppendTable(t: SgAppendTable): void {
  sgFreeTable(t.sgt);
  t.prv = null;
  t.totalNents = 0;
}

/**
 * `get_next_sg()`: the entry after `cur`, allocating and chaining a new chunk of
 * min(needed, SG_MAX_SINGLE_ALLOC) entries when `cur`'s successor is the last slot and more than one
 * entry is still needed. @returns the entry, or null when the allocation failed (-ENOMEM).
 */
function getNextSg(
  t: SgAppendTable,
  cur: Scatterlist | null,
  needed: number,
  opts: SgOptions,
): Scatterlist | null {
  let nextSg: Scatterlist | null = null;
  if (cur !== null) {
    nextSg = sgNext(cur);
    if (nextSg === null) throw new Error('BUG: appending after an entry marked end (left_pages was 0)');
    if (!sgIsLast(nextSg) || needed === 1) return nextSg;
  }
  const allocSize = Math.min(needed, SG_MAX_SINGLE_ALLOC);
  if (opts.allocFails?.(allocSize)) return null;
  const chunk = sgInitChunk(allocSize);
  if (cur !== null && nextSg !== null) {
    t.totalNents += allocSize - 1;
    sgChain(nextSg, chunk);
  } else {
    t.sgt.sgl = chunk[0]!;
    t.totalNents = allocSize;
  }
  return chunk[0]!;
}

/** `pages_are_mergeable()` of the profile: 6.1 pfn contiguity; 6.2+ also the same pgmap. */
function pagesAreMergeable(a: number, b: number, opts: SgOptions): boolean {
  if (a !== b + 1) return false;
  if (opts.version === '6.1') return true;
  const pg = opts.pgmapOf ?? NO_PGMAP;
  return pg(pfnPhys(a)) === pg(pfnPhys(b));
}

const pfnPhys = (pfn: number): PhysAddr => physAddr(BigInt(pfn) << BigInt(PAGE_SHIFT));
const U64 = (v: bigint): bigint => BigInt.asUintN(64, v);

function warnOn(opts: SgOptions, what: string): void {
  opts.log?.printk('warn', `WARNING: lib/scatterlist.c: ${what}`);
}

/**
 * `sg_alloc_append_table_from_pages()`: add `pages` to an append table, merging physically
 * contiguous pages into entries of at most `maxSegment` bytes. `offset` is the data's offset in the
 * first page, `size` the valid bytes after it; `leftPages` is how many pages later calls will
 * append (so chunk allocation leaves room for them). The append merge grows the previous entry by
 * whole pages regardless of `size`, exactly as the kernel does.
 *
 * Preconditions: pages.length >= 1 (the kernel reads pages[0] unconditionally).
 * @returns ok;
 *   EINVAL — `maxSegment` aligned down to PAGE_SIZE is below PAGE_SIZE (WARN), or an append to a
 *            non-empty table with a non-zero `offset` (WARN);
 *   EOPNOTSUPP — an append on an architecture without SG chaining;
 *   ENOMEM — a chunk allocation failed; the previous entry's length is restored and the caller
 *            frees the table with `sgFreeAppendTable()`.
 */
export function sgAllocAppendTableFromPages(
  t: SgAppendTable,
  pages: readonly number[],
  offset: number,
  size: Bytes,
  maxSegment: number,
  leftPages: number,
  opts: SgOptions,
): KResult<void> {
  if (pages.length === 0) throw new RangeError('BUG: sg_alloc_append_table_from_pages() with no pages');
  const maxSeg = maxSegment - (maxSegment % PAGE_SIZE);
  if (maxSeg < PAGE_SIZE) {
    warnOn(opts, 'max_segment < PAGE_SIZE in sg_alloc_append_table_from_pages');
    return err('EINVAL', `max_segment ${maxSegment} aligns down below PAGE_SIZE`);
  }
  if (opts.archNoSgChain && t.prv !== null) return err('EOPNOTSUPP', 'append without SG chaining');
  let first = 0;
  let prvLen = 0;
  if (t.prv !== null) {
    if (offset !== 0) {
      warnOn(opts, 'offset on an append in sg_alloc_append_table_from_pages');
      return err('EINVAL', `append with offset ${offset}`);
    }
    prvLen = t.prv.length;
    first = appendMergeIntoPrv(t.prv, pages, maxSeg, opts);
    if (first === pages.length) {
      if (leftPages === 0) sgMarkEnd(t.prv);
      return ok(undefined);
    }
  }
  return addChunks(t, pages.slice(first), offset, size, maxSeg, leftPages, prvLen, opts);
}

/** The append merge: grow the previous entry by the pages that continue it. @returns pages consumed. */
function appendMergeIntoPrv(
  prv: Scatterlist,
  pages: readonly number[],
  maxSeg: number,
  opts: SgOptions,
): number {
  if (prv.pfn === null) throw new Error('BUG: append after an entry without a page');
  // The pfn just after prv's data; a prv ending inside a page yields that page's pfn (kernel quirk).
  const end = (BigInt(prv.pfn) << BigInt(PAGE_SHIFT)) + BigInt(prv.offset) + BigInt(prv.length);
  const nextPfn = Number(end >> BigInt(PAGE_SHIFT));
  if (pages[0] !== nextPfn) return 0;
  let last = nextPfn - 1;
  let used = 0;
  while (used < pages.length && pagesAreMergeable(pages[used]!, last, opts)) {
    if (prv.length + PAGE_SIZE > maxSeg) break;
    prv.length += PAGE_SIZE;
    last = pages[used]!;
    used++;
  }
  return used;
}

/** Count the chunks (future entries) of `pages` under `maxSeg` and the merge rule. */
function countChunks(pages: readonly number[], maxSeg: number, opts: SgOptions): number {
  let chunks = 1;
  let segLen = 0;
  for (let i = 1; i < pages.length; i++) {
    segLen += PAGE_SIZE;
    if (segLen >= maxSeg || !pagesAreMergeable(pages[i]!, pages[i - 1]!, opts)) {
      chunks++;
      segLen = 0;
    }
  }
  return chunks;
}

function addChunks(
  t: SgAppendTable,
  pages: readonly number[],
  offsetIn: number,
  sizeIn: bigint,
  maxSeg: number,
  leftPages: number,
  prvLen: number,
  opts: SgOptions,
): KResult<void> {
  const chunks = countChunks(pages, maxSeg, opts);
  let s = t.prv;
  let offset = offsetIn;
  let size = U64(sizeIn);
  let curPage = 0;
  let added = 0;
  for (let i = 0; i < chunks; i++) {
    let j = curPage + 1;
    let segLen = 0;
    for (; j < pages.length; j++) {
      segLen += PAGE_SIZE;
      if (segLen >= maxSeg || !pagesAreMergeable(pages[j]!, pages[j - 1]!, opts)) break;
    }
    s = getNextSg(t, s, chunks - i + leftPages, opts);
    if (s === null) {
      if (t.prv !== null) t.prv.length = prvLen;
      return err('ENOMEM', 'scatterlist chunk allocation failed');
    }
    const chunkSize = (((j - curPage) << PAGE_SHIFT) - offset) >>> 0;
    sgSetPage(s, pages[curPage]!, Number(size < BigInt(chunkSize) ? size : BigInt(chunkSize)), offset);
    added++;
    size = U64(size - BigInt(chunkSize));
    offset = 0;
    curPage = j;
  }
  t.sgt.nents += added;
  t.sgt.origNents = t.sgt.nents;
  t.prv = s;
  if (leftPages === 0 && s !== null) sgMarkEnd(s);
  return ok(undefined);
}

/**
 * `sg_alloc_table_from_pages_segment()`: a fresh table from `pages` (the append builder with
 * left_pages = 0), copied out into `sgt`.
 * @returns as `sgAllocAppendTableFromPages` (EINVAL, EOPNOTSUPP never — no append —, ENOMEM); on
 *   error nothing is left allocated.
 */
export function sgAllocTableFromPagesSegment(
  sgt: SgTable,
  pages: readonly number[],
  offset: number,
  size: Bytes,
  maxSegment: number,
  opts: SgOptions,
): KResult<void> {
  const append = newSgAppendTable();
  const res = sgAllocAppendTableFromPages(append, pages, offset, size, maxSegment, 0, opts);
  if (!res.ok) {
    sgFreeAppendTable(append);
    return res;
  }
  Object.assign(sgt, append.sgt);
  if (append.totalNents !== sgt.origNents)
    warnOn(opts, 'total_nents != orig_nents in sg_alloc_table_from_pages_segment');
  return ok(undefined);
}

/**
 * `sg_alloc_table_from_pages()`: `sgAllocTableFromPagesSegment` with max_segment = UINT_MAX.
 * @returns as `sgAllocTableFromPagesSegment`.
 */
export function sgAllocTableFromPages(
  sgt: SgTable,
  pages: readonly number[],
  offset: number,
  size: Bytes,
  opts: SgOptions,
): KResult<void> {
  return sgAllocTableFromPagesSegment(sgt, pages, offset, size, UINT_MAX, opts);
}
