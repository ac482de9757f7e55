// Scatterlists: `struct scatterlist`, `struct sg_table`, chained chunk allocation, iteration and the
// DMA flag helpers of lib/scatterlist.c and include/linux/scatterlist.h.
//
// An entry here is a small object with the fields of the C struct; `page_link`'s three meanings are
// split into `pfn` (the page; null for a DMA-only entry such as a dma-buf MMIO export), `end`
// (SG_END, bit 1) and `chain` (SG_CHAIN, bit 0: the slot links to the next chunk). Chunks are arrays
// of at most SG_MAX_SINGLE_ALLOC entries; a chunk that is followed by another gives up its last slot
// to the chain link, which is why `total_nents` can exceed `orig_nents`:
//
//   chunk 0: [e0][e1] ... [e126][chain] ──> chunk 1: [e127][e128] ... [end] [unused]
//
// The page-array builders (`sg_alloc_append_table_from_pages()` and friends) are in
// scatterlist-pages.ts.

import { type DmaAddr, dmaAddr, PAGE_SHIFT, type PhysAddr, physAddr } from '../../hw/addr.js';
import { err, type KResult, ok } from '../errno.js';
import type { KernelLog } from '../printk.js';
import type { KernelVersion } from '../profile.js';
import type { PgmapOf } from './phyr.js';

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
export function sgInitChunk(n: number): Scatterlist[] {
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
export function sgChain(slot: Scatterlist, chunk: Scatterlist[]): void {
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
