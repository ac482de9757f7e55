// swiotlb: the software IO TLB of kernel/dma/swiotlb.c — bounce buffers in a reserved pool of
// 2 KiB slots, used when a device cannot reach a buffer (DMA mask, bus limit, forced bouncing,
// untrusted devices behind an IOMMU).
//
//   pool (64 MiB = 32768 slots), split into areas (a power of two from the CPU count, >= 128 slots each)
//   |-- area 0 ------------------|-- area 1 ------------------| ...
//   |seg 0 (128 slots)|seg 1 ... |                             each area: {index, used}
//   slot: {list, orig_addr, alloc_size, pad_slots}   list[i] = free slots from i to its segment's end
//
// A mapping takes `nslots` contiguous free slots inside one 128-slot segment, found from the area
// of the mapping CPU onwards. Bytes really move through a `PhysMemoryAccessor`: map always copies
// original -> bounce; unmap copies back for from-device/bidirectional unless SKIP_CPU_SYNC; the
// sync calls copy per direction and BUG (throw) on a direction that makes no sense.
// Profiles: 6.1 (`swiotlb_do_find_slots()`, the slots_checked fix included) and newest (6.12+:
// `swiotlb_search_pool_area()`, padding slots for alignment larger than a slot, alloc_size derived).
// The slot search itself is in swiotlb-search.ts. Dynamic pools and restricted pools are not modelled.

import { type Bytes, bytes, type PhysAddr, physAddr } from '../../hw/addr.js';
import { err, type KResult, ok } from '../errno.js';
import type { KernelLog } from '../printk.js';
import type { KernelVersion } from '../profile.js';
import {
  DMA_ATTR_NO_WARN,
  DMA_ATTR_SKIP_CPU_SYNC,
  type DmaDirection,
  type PhysMemoryAccessor,
} from './dma-types.js';
import {
  INVALID_PHYS_ADDR,
  IO_TLB_SEGSIZE,
  IO_TLB_SHIFT,
  IO_TLB_SIZE,
  nrSlots,
  type SwiotlbDevice,
  type SwiotlbPool,
  swiotlbAlignOffset,
  swiotlbFindSlots,
} from './swiotlb-search.js';

export {
  INVALID_PHYS_ADDR,
  IO_TLB_SEGSIZE,
  IO_TLB_SHIFT,
  IO_TLB_SIZE,
  type SwiotlbDevice,
  type SwiotlbPool,
} from './swiotlb-search.js';

/** `IO_TLB_DEFAULT_SIZE`: 64 MiB. */
export const IO_TLB_DEFAULT_SIZE = 64n << 20n;
/** `IO_TLB_MIN_SLABS`: 1 MiB worth of slots. */
export const IO_TLB_MIN_SLABS = (1 << 20) >> IO_TLB_SHIFT;

export interface SwiotlbPoolOptions {
  readonly version?: KernelVersion | undefined;
  /** Physical address of the pool's buffer (its bytes live in `memory`). */
  readonly start: PhysAddr;
  /** Pool size; default IO_TLB_DEFAULT_SIZE. Rounded to whole 128-slot segments, as `swiotlb=` is. */
  readonly sizeBytes?: Bytes | undefined;
  /** Possible CPUs (`num_possible_cpus()`), which sets the number of areas. */
  readonly nrCpus: number;
  readonly memory: PhysMemoryAccessor;
  readonly log?: Pick<KernelLog, 'printk'> | undefined;
}

/** `swiotlb_adjust_nareas()` + `limit_nareas()`: a power of two >= CPUs, each area >= 128 slots. */
export function swiotlbAreaCount(nrCpus: number, nslabs: number): number {
  let nareas = 1;
  while (nareas < nrCpus) nareas *= 2;
  if (nslabs < nareas * IO_TLB_SEGSIZE) nareas = Math.floor(nslabs / IO_TLB_SEGSIZE);
  return nareas;
}

/**
 * `swiotlb_init_io_tlb_pool()`: a pool of empty slots. Precondition: at least one 128-slot segment
 * and a start aligned to IO_TLB_SIZE (the kernel allocates it page-aligned).
 */
export function swiotlbInitPool(opts: SwiotlbPoolOptions): SwiotlbPool {
  const size = opts.sizeBytes ?? IO_TLB_DEFAULT_SIZE;
  const raw = Number(size >> BigInt(IO_TLB_SHIFT));
  const nslabs = Math.ceil(raw / IO_TLB_SEGSIZE) * IO_TLB_SEGSIZE;
  if (nslabs < IO_TLB_SEGSIZE) throw new RangeError(`swiotlb pool of ${size} bytes`);
  if ((opts.start & BigInt(IO_TLB_SIZE - 1)) !== 0n)
    throw new RangeError('swiotlb pool start not slot-aligned');
  const nareas = swiotlbAreaCount(opts.nrCpus, nslabs);
  const list = new Int32Array(nslabs);
  for (let i = 0; i < nslabs; i++) list[i] = IO_TLB_SEGSIZE - (i & (IO_TLB_SEGSIZE - 1));
  const origAddr = new BigUint64Array(nslabs).fill(INVALID_PHYS_ADDR);
  return {
    version: opts.version ?? 'newest',
    start: opts.start,
    end: physAddr(opts.start + (BigInt(nslabs) << BigInt(IO_TLB_SHIFT))),
    nslabs,
    nareas,
    areaNslabs: nslabs / nareas,
    areas: Array.from({ length: nareas }, () => ({ index: 0, used: 0 })),
    list,
    origAddr,
    allocSize: new Uint32Array(nslabs),
    padSlots: new Uint16Array(nslabs),
    memory: opts.memory,
    log: opts.log,
    warnedOnce: new Set(),
  };
}

/** `is_swiotlb_buffer()`: does `paddr` lie in the pool? */
export const isSwiotlbBuffer = (pool: SwiotlbPool, paddr: bigint): boolean =>
  paddr >= pool.start && paddr < pool.end;

/** `mem_used()`: slots in use over all areas. */
export const swiotlbUsed = (pool: SwiotlbPool): number => pool.areas.reduce((n, a) => n + a.used, 0);

function warnOnce(pool: SwiotlbPool, dev: SwiotlbDevice, key: string, text: string): void {
  const k = `${dev.name}\u0000${key}`;
  if (pool.warnedOnce.has(k)) return;
  pool.warnedOnce.add(k);
  pool.log?.printk('warn', `${dev.name}: ${text}`);
}

export interface SwiotlbMapOptions {
  readonly dir: DmaDirection;
  readonly attrs?: number | undefined;
  /** The mapping CPU (`raw_smp_processor_id()`), which picks the first area searched. */
  readonly cpu: number;
  /** 6.1 only: bytes to allocate (>= the mapping size; dma-iommu pads to the IOVA granule). */
  readonly allocSize?: Bytes | undefined;
  /** Required alignment of the allocation (dma-iommu passes `iova_mask()`); default 0. */
  readonly allocAlignMask?: number | undefined;
}

/**
 * `swiotlb_tbl_map_single()`: bounce `mappingSize` bytes at `origAddr` into the pool. The returned
 * address keeps the bits of `origAddr` under the device's min_align_mask; the bounce buffer is
 * filled from the original whatever the direction (so a partial device write leaks nothing).
 * @returns the bounce buffer's physical address;
 *   ENOMEM — no slots fit ("swiotlb buffer is full (sz: ...)" is logged unless DMA_ATTR_NO_WARN);
 *   EINVAL — 6.1: mapping size larger than alloc size ("Invalid sizes ..." logged once).
 *   (Both are DMA_MAPPING_ERROR in the kernel.)
 */
export function swiotlbTblMapSingle(
  pool: SwiotlbPool,
  dev: SwiotlbDevice,
  origAddr: PhysAddr,
  mappingSize: Bytes,
  o: SwiotlbMapOptions,
): KResult<PhysAddr> {
  const mapping = Number(mappingSize);
  const alignMask = o.allocAlignMask ?? 0;
  let offset: number;
  let size: number;
  if (pool.version === '6.1') {
    const alloc = Number(o.allocSize ?? mappingSize);
    if (mapping > alloc) {
      warnOnce(pool, dev, 'sizes', `Invalid sizes (mapping: ${mapping} bytes, alloc: ${alloc} bytes)`);
      return err('EINVAL', `mapping ${mapping} > alloc ${alloc}`);
    }
    offset = swiotlbAlignOffset(dev, 0, origAddr);
    size = alloc;
  } else {
    offset = swiotlbAlignOffset(dev, alignMask, origAddr);
    size = Math.ceil((mapping + offset) / (alignMask + 1)) * (alignMask + 1);
  }
  const searchSize = pool.version === '6.1' ? size + offset : size;
  let index = swiotlbFindSlots(pool, dev, origAddr, searchSize, alignMask, o.cpu);
  if (index < 0) {
    if (((o.attrs ?? 0) & DMA_ATTR_NO_WARN) === 0) {
      pool.log?.printk(
        'warn',
        `${dev.name}: swiotlb buffer is full (sz: ${size} bytes), total ${pool.nslabs} (slots), used ${swiotlbUsed(pool)} (slots)`,
      );
    }
    return err('ENOMEM', `no ${nrSlots(searchSize)} contiguous swiotlb slots`);
  }
  const padSlots = offset >> IO_TLB_SHIFT;
  offset &= IO_TLB_SIZE - 1;
  index += padSlots;
  pool.padSlots[index] = padSlots;
  for (let i = 0; i < nrSlots(searchSize) - padSlots; i++) {
    pool.origAddr[index + i] = origAddr + (BigInt(i) << BigInt(IO_TLB_SHIFT));
  }
  const tlbAddr = physAddr(pool.start + (BigInt(index) << BigInt(IO_TLB_SHIFT)) + BigInt(offset));
  swiotlbBounce(pool, dev, tlbAddr, mapping, 'to-device');
  return ok(tlbAddr);
}

/** `swiotlb_bounce()`: copy between the original buffer and the bounce slots of `tlbAddr`. */
function swiotlbBounce(
  pool: SwiotlbPool,
  dev: SwiotlbDevice,
  tlbAddr: PhysAddr,
  sizeIn: number,
  dir: DmaDirection,
): void {
  const index = Number((tlbAddr - pool.start) >> BigInt(IO_TLB_SHIFT));
  let orig = pool.origAddr[index]!;
  let allocSize = pool.allocSize[index]!;
  if (orig === INVALID_PHYS_ADDR) return;
  let size = sizeIn;
  let tlbOffset = Number(tlbAddr & BigInt(IO_TLB_SIZE - 1));
  const origOffset = swiotlbAlignOffset(dev, 0, orig);
  if (tlbOffset < origOffset) {
    warnOnce(
      pool,
      dev,
      'before',
      `Access before mapping start detected. orig offset ${origOffset}, requested offset ${tlbOffset}.`,
    );
    return;
  }
  tlbOffset -= origOffset;
  if (tlbOffset > allocSize) {
    warnOnce(
      pool,
      dev,
      'overflow1',
      `Buffer overflow detected. Allocation size: ${allocSize}. Mapping size: ${size}+${tlbOffset}.`,
    );
    return;
  }
  orig += BigInt(tlbOffset);
  allocSize -= tlbOffset;
  if (size > allocSize) {
    warnOnce(
      pool,
      dev,
      'overflow2',
      `Buffer overflow detected. Allocation size: ${allocSize}. Mapping size: ${size}.`,
    );
    size = allocSize;
  }
  if (size === 0) return;
  if (dir === 'to-device') pool.memory.write(tlbAddr, pool.memory.read(physAddr(orig), size));
  else pool.memory.write(physAddr(orig), pool.memory.read(tlbAddr, size));
}

/** `swiotlb_release_slots()`: give a mapping's slots back and re-merge the free counts. */
function swiotlbReleaseSlots(pool: SwiotlbPool, dev: SwiotlbDevice, tlbAddr: PhysAddr): void {
  const offset = swiotlbAlignOffset(dev, 0, tlbAddr);
  let index = Number((tlbAddr - BigInt(offset) - pool.start) >> BigInt(IO_TLB_SHIFT));
  index -= pool.padSlots[index]!;
  const nslots = nrSlots(pool.allocSize[index]! + offset);
  const area = pool.areas[Math.floor(index / pool.areaNslabs)];
  if (area === undefined) throw new Error('BUG: swiotlb_release_slots outside the pool areas');
  const segEnd = (Math.floor(index / IO_TLB_SEGSIZE) + 1) * IO_TLB_SEGSIZE;
  let count = index + nslots < segEnd ? pool.list[index + nslots]! : 0;
  for (let i = index + nslots - 1; i >= index; i--) {
    pool.list[i] = ++count;
    pool.origAddr[i] = INVALID_PHYS_ADDR;
    pool.allocSize[i] = 0;
    pool.padSlots[i] = 0;
  }
  for (let i = index - 1; (i & (IO_TLB_SEGSIZE - 1)) !== IO_TLB_SEGSIZE - 1 && pool.list[i]! > 0; i--) {
    pool.list[i] = ++count;
  }
  area.used -= nslots;
}

/**
 * `swiotlb_tbl_unmap_single()`: copy back (from-device/bidirectional, unless SKIP_CPU_SYNC), then
 * free the slots. Precondition: `tlbAddr` came from `swiotlbTblMapSingle` on this pool.
 */
export function swiotlbTblUnmapSingle(
  pool: SwiotlbPool,
  dev: SwiotlbDevice,
  tlbAddr: PhysAddr,
  mappingSize: Bytes,
  dir: DmaDirection,
  attrs = 0,
): void {
  if (!isSwiotlbBuffer(pool, tlbAddr))
    throw new Error(`BUG: unmapping ${tlbAddr} which is not a swiotlb buffer`);
  if ((attrs & DMA_ATTR_SKIP_CPU_SYNC) === 0 && (dir === 'from-device' || dir === 'bidirectional')) {
    swiotlbBounce(pool, dev, tlbAddr, Number(mappingSize), 'from-device');
  }
  swiotlbReleaseSlots(pool, dev, tlbAddr);
}

/**
 * `swiotlb_sync_single_for_device()`: hand the buffer back to the device — copy original -> bounce
 * for to-device/bidirectional; nothing for from-device; any other direction is a kernel BUG (throws).
 */
export function swiotlbSyncSingleForDevice(
  pool: SwiotlbPool,
  dev: SwiotlbDevice,
  tlbAddr: PhysAddr,
  size: Bytes,
  dir: DmaDirection,
): void {
  if (dir === 'to-device' || dir === 'bidirectional')
    swiotlbBounce(pool, dev, tlbAddr, Number(size), 'to-device');
  else if (dir !== 'from-device')
    throw new Error(`BUG: swiotlb_sync_single_for_device with direction ${dir}`);
}

/**
 * `swiotlb_sync_single_for_cpu()`: hand the buffer to the CPU — copy bounce -> original for
 * from-device/bidirectional; nothing for to-device; any other direction is a kernel BUG (throws).
 */
export function swiotlbSyncSingleForCpu(
  pool: SwiotlbPool,
  dev: SwiotlbDevice,
  tlbAddr: PhysAddr,
  size: Bytes,
  dir: DmaDirection,
): void {
  if (dir === 'from-device' || dir === 'bidirectional')
    swiotlbBounce(pool, dev, tlbAddr, Number(size), 'from-device');
  else if (dir !== 'to-device') throw new Error(`BUG: swiotlb_sync_single_for_cpu with direction ${dir}`);
}

/**
 * `swiotlb_max_mapping_size()`: one segment (128 slots = 256 KiB) less the slot-rounded
 * min_align_mask, which the slot search may have to skip.
 */
export function swiotlbMaxMappingSize(dev: SwiotlbDevice): Bytes {
  const mask = dev.minAlignMask;
  const minAlign = mask !== 0 ? Math.ceil(mask / IO_TLB_SIZE) * IO_TLB_SIZE : 0;
  return bytes(IO_TLB_SIZE * IO_TLB_SEGSIZE - minAlign);
}
