// The swiotlb slot search: which contiguous free slots a mapping gets (kernel/dma/swiotlb.c,
// 6.1 `swiotlb_do_find_slots()` and 6.12+ `swiotlb_search_pool_area()`), plus the pool and device
// shapes both sides share.
//
// The rules a candidate slot must meet, per profile:
//                 6.1                                       newest (6.12+)
//   start         ALIGN(area->index, stride)                area->index
//   stride        max(min_align stride, 2 if >= PAGE_SIZE,  slots of max(alloc_align_mask | 2047,
//                     alloc_align_mask stride)              min_align_mask & ~that)
//   start align   only via stride (min-align misses step 1) (slot addr & alloc_align_mask) == 0, where
//                                                           >= PAGE_SIZE without any mask means 4 KiB
//   low bits      slot addr & min_align & ~2047 == orig's   the same over the bits the alignment leaves
//   boundary      never crosses the device's segment boundary (`iommu_is_span_boundary()`)
//   room          list[slot] >= nslots (contiguous free slots to the segment end)
// Both scan at most area_nslabs candidates (6.1 with the "fix the deadlock" backport).

import { PAGE_SIZE, type PhysAddr, U64_MASK } from '../../hw/addr.js';
import type { KernelLog } from '../printk.js';
import type { KernelVersion } from '../profile.js';
import type { PhysMemoryAccessor } from './dma-types.js';

/** log2 of the slot size. */
export const IO_TLB_SHIFT = 11;
/** Slot size: 2 KiB. */
export const IO_TLB_SIZE = 1 << IO_TLB_SHIFT;
/** Slots per segment: a mapping never spans two segments (so at most 256 KiB). */
export const IO_TLB_SEGSIZE = 128;
/** `INVALID_PHYS_ADDR`: a slot without an original address. */
export const INVALID_PHYS_ADDR = U64_MASK;

/** What swiotlb needs to know about the mapping device. */
export interface SwiotlbDevice {
  /** For log lines: "<driver> <BDF>" as `dev_name()` prints it. */
  readonly name: string;
  /** `dma_get_min_align_mask()`: low address bits the device needs preserved (NVMe: 0xfff); 0 if none. */
  readonly minAlignMask: number;
  /** `dma_get_seg_boundary()`: ULONG_MAX without dma_parms; PCI devices default to 0xffffffff. */
  readonly segBoundaryMask: bigint;
  /** `phys_to_dma_unencrypted()` of the pool start; identity when absent. */
  readonly physToDma?: ((p: PhysAddr) => bigint) | undefined;
}

/** `struct io_tlb_area`. */
export interface SwiotlbArea {
  index: number;
  used: number;
}

/** `struct io_tlb_mem` / `struct io_tlb_pool` (one static pool), slots as parallel typed arrays. */
export interface SwiotlbPool {
  readonly version: KernelVersion;
  readonly start: PhysAddr;
  readonly end: PhysAddr;
  readonly nslabs: number;
  readonly nareas: number;
  readonly areaNslabs: number;
  readonly areas: SwiotlbArea[];
  /** Free slots from each slot to the end of its segment (0 = in use). */
  readonly list: Int32Array;
  readonly origAddr: BigUint64Array;
  /** Bytes of the allocation from this slot's data on (for bounds checks of partial syncs). */
  readonly allocSize: Uint32Array;
  /** newest: slots skipped before the data for alignment larger than a slot. */
  readonly padSlots: Uint16Array;
  readonly memory: PhysMemoryAccessor;
  readonly log?: Pick<KernelLog, 'printk'> | undefined;
  /** dev_warn_once / dev_WARN_ONCE lines already printed (device + kind). */
  readonly warnedOnce: Set<string>;
}

/** `nr_slots()`: slots covering `bytes`. */
export const nrSlots = (n: number): number => Math.ceil(n / IO_TLB_SIZE);

/**
 * `swiotlb_align_offset()`: the offset into a slot (newest: into the allocation, masked by
 * `alignMask | 2047`) that keeps the device's min_align_mask bits of `addr`.
 */
export function swiotlbAlignOffset(dev: SwiotlbDevice, alignMask: number, addr: bigint): number {
  const low = Number(addr & 0xffff_ffffn);
  return (low & dev.minAlignMask & (alignMask | (IO_TLB_SIZE - 1))) >>> 0;
}

/** `iommu_is_span_boundary()` on slot numbers: would `nr` slots from `index` cross a boundary? */
function makeSpanCheck(shiftSlots: bigint, maxSlots: bigint): (index: number, nr: number) => boolean {
  if (maxSlots <= 1n << 32n) {
    const m = Number(maxSlots);
    const s = Number(shiftSlots % maxSlots);
    return (index, nr) => ((s + index) % m) + nr > m;
  }
  return (index, nr) => ((shiftSlots + BigInt(index)) & (maxSlots - 1n)) + BigInt(nr) > maxSlots;
}

interface SearchRules {
  stride: number;
  start: number;
  /** Slot-address bits that must be zero (newest alloc alignment); 0 in 6.1. */
  zeroMask: number;
  /** Slot-address bits that must equal the original address's. */
  matchMask: number;
}

function rules61(
  pool: SwiotlbPool,
  dev: SwiotlbDevice,
  allocSize: number,
  allocAlignMask: number,
  index: number,
): SearchRules {
  const matchMask = (dev.minAlignMask & ~(IO_TLB_SIZE - 1)) >>> 0;
  let stride = (matchMask >>> IO_TLB_SHIFT) + 1;
  if (allocSize >= PAGE_SIZE) stride = Math.max(stride, stride * (PAGE_SIZE / IO_TLB_SIZE));
  stride = Math.max(stride, (allocAlignMask >>> IO_TLB_SHIFT) + 1);
  const aligned = Math.ceil(index / stride) * stride;
  return { stride, start: aligned >= pool.areaNslabs ? 0 : aligned, zeroMask: 0, matchMask };
}

function rulesNewest(
  dev: SwiotlbDevice,
  allocSize: number,
  allocAlignIn: number,
  index: number,
): SearchRules {
  let iotlbAlignMask = dev.minAlignMask;
  let allocAlignMask = allocAlignIn;
  // Streaming mappings of a page or more stay page-aligned when nothing else asks for alignment.
  if (allocAlignMask === 0 && iotlbAlignMask === 0 && allocSize >= PAGE_SIZE) allocAlignMask = PAGE_SIZE - 1;
  allocAlignMask = (allocAlignMask | (IO_TLB_SIZE - 1)) >>> 0;
  iotlbAlignMask = (iotlbAlignMask & ~allocAlignMask) >>> 0;
  const stride = Math.floor(Math.max(allocAlignMask, iotlbAlignMask) / IO_TLB_SIZE) + 1;
  return { stride, start: index, zeroMask: allocAlignMask, matchMask: iotlbAlignMask };
}

/**
 * Search area `areaIndex` for `nrSlots(allocSize)` contiguous slots and take them.
 * @returns the first slot's index in the pool, or -1.
 */
function searchArea(
  pool: SwiotlbPool,
  dev: SwiotlbDevice,
  areaIndex: number,
  origAddr: bigint,
  allocSize: number,
  allocAlignMask: number,
): number {
  const area = pool.areas[areaIndex]!;
  const boundary = dev.segBoundaryMask & U64_MASK;
  const tbl = BigInt(dev.physToDma?.(pool.start) ?? pool.start) & boundary;
  const spans = makeSpanCheck(
    (tbl + BigInt(IO_TLB_SIZE - 1)) >> BigInt(IO_TLB_SHIFT),
    (boundary >> BigInt(IO_TLB_SHIFT)) + 1n,
  );
  const nslots = nrSlots(allocSize);
  if (nslots === 0) throw new Error('BUG: swiotlb slot search for 0 bytes');
  const r =
    pool.version === '6.1'
      ? rules61(pool, dev, allocSize, allocAlignMask, area.index)
      : rulesNewest(dev, allocSize, allocAlignMask, area.index);
  if (nslots > pool.areaNslabs - area.used) return -1;
  const wrap = (i: number): number => (i >= pool.areaNslabs ? 0 : i);
  const tblLow = Number(tbl & 0xffff_ffffn);
  const origLow = Number(BigInt(origAddr) & 0xffff_ffffn);
  const slotBase = areaIndex * pool.areaNslabs;
  let index = r.start;
  for (let checked = 0; checked < pool.areaNslabs; ) {
    const slot = slotBase + index;
    const low = (tblLow + slot * IO_TLB_SIZE) % 0x1_0000_0000;
    if ((low & r.zeroMask) !== 0 || (origAddr !== 0n && (low & r.matchMask) !== (origLow & r.matchMask))) {
      index = wrap(index + 1);
      checked++;
      continue;
    }
    if (!spans(slot, nslots) && pool.list[slot]! >= nslots) {
      takeSlots(pool, dev, slot, nslots, allocSize, origAddr);
      area.index = wrap(index + nslots);
      area.used += nslots;
      return slot;
    }
    index = wrap(index + r.stride);
    checked += r.stride;
  }
  return -1;
}

function takeSlots(
  pool: SwiotlbPool,
  dev: SwiotlbDevice,
  slot: number,
  nslots: number,
  allocSize: number,
  orig: bigint,
): void {
  const offset = swiotlbAlignOffset(dev, 0, orig);
  for (let i = slot; i < slot + nslots; i++) {
    pool.list[i] = 0;
    pool.allocSize[i] = allocSize - (offset + ((i - slot) << IO_TLB_SHIFT));
  }
  let count = 0;
  for (let i = slot - 1; (i & (IO_TLB_SEGSIZE - 1)) !== IO_TLB_SEGSIZE - 1 && pool.list[i]! > 0; i--) {
    pool.list[i] = ++count;
  }
}

/**
 * `swiotlb_find_slots()`: search the areas starting at the mapping CPU's (`cpu & (nareas - 1)`).
 * @returns the first slot's index, or -1 when no area has room.
 */
export function swiotlbFindSlots(
  pool: SwiotlbPool,
  dev: SwiotlbDevice,
  origAddr: bigint,
  allocSize: number,
  allocAlignMask: number,
  cpu: number,
): number {
  const start = cpu & (pool.nareas - 1);
  let i = start;
  do {
    const index = searchArea(pool, dev, i, origAddr, allocSize, allocAlignMask);
    if (index >= 0) return index;
    if (++i >= pool.nareas) i = 0;
  } while (i !== start);
  return -1;
}
