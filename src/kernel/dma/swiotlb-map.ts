// The device-facing swiotlb helpers of kernel/dma/swiotlb.c and include/linux/swiotlb.h, over the
// pool of swiotlb.ts: `is_swiotlb_active()`, `is_swiotlb_force_bounce()`, `is_swiotlb_buffer()`,
// `swiotlb_map()` (bounce and return a DMA address, as dma-direct uses it) and the map/unmap/sync
// wrappers that reset `dma_skip_sync` on a device's first bounce (`dma_reset_need_sync()`).

import { type Bytes, type DmaAddr, dmaAddr, hexPad, type PhysAddr } from '../../hw/addr.js';
import type { KResult } from '../errno.js';
import { devName } from '../printk.js';
import { type DmaDevice, devIsDmaCoherent } from './device.js';
import { DMA_ATTR_SKIP_CPU_SYNC, DMA_MAPPING_ERROR, type DmaDirection } from './dma-types.js';
import {
  isSwiotlbBuffer,
  type SwiotlbDevice,
  swiotlbMaxMappingSize,
  swiotlbSyncSingleForCpu,
  swiotlbSyncSingleForDevice,
  swiotlbTblMapSingle,
  swiotlbTblUnmapSingle,
} from './swiotlb.js';

/** The swiotlb view of a device: name as dev_warn prints it, alignment, boundary, address translation. */
export function swiotlbDeviceOf(dev: DmaDevice): SwiotlbDevice {
  return {
    get name() {
      return devName(dev.fn);
    },
    get minAlignMask() {
      return dev.minAlignMask;
    },
    get segBoundaryMask() {
      return dev.segBoundaryMask;
    },
    physToDma: (p: PhysAddr) => physToDmaRaw(dev, p),
  };
}

/** `translate_phys_to_dma()` without the error check: identity without a range map. */
export function physToDmaRaw(dev: DmaDevice, paddr: bigint): bigint {
  const map = dev.dmaRangeMap;
  if (map === null) return paddr;
  for (const m of map) {
    if (paddr >= m.cpuStart && paddr - m.cpuStart < m.size) return paddr - m.cpuStart + m.dmaStart;
  }
  return DMA_MAPPING_ERROR;
}

/** `is_swiotlb_active()`: the device has a pool to bounce through. */
export const isSwiotlbActive = (dev: DmaDevice): boolean => dev.ctx.swiotlb !== null;
/** `is_swiotlb_force_bounce()`. */
export const isSwiotlbForceBounce = (dev: DmaDevice): boolean => dev.forceBounce && dev.ctx.swiotlb !== null;
/** `is_swiotlb_buffer()` / `swiotlb_find_pool()`: is `phys` a bounce slot of the device's pool? */
export const isSwiotlbBufferOf = (dev: DmaDevice, phys: bigint): boolean =>
  dev.ctx.swiotlb !== null && isSwiotlbBuffer(dev.ctx.swiotlb, phys);

/**
 * `swiotlb_tbl_map_single()` for a device: bounce `size` bytes of `phys`, aligned to `allocAlignMask`.
 * @returns the bounce buffer, or ENOMEM ("swiotlb buffer is full ..." logged) / EINVAL (6.1 sizes);
 *   throws when the device has no pool (a caller must check `isSwiotlbActive()` first).
 */
export function swiotlbTblMapSingleDev(
  dev: DmaDevice,
  phys: PhysAddr,
  size: Bytes,
  allocAlignMask: number,
  dir: DmaDirection,
  attrs: number,
  allocSize?: Bytes,
): KResult<PhysAddr> {
  const pool = dev.ctx.swiotlb;
  if (pool === null) throw new Error('BUG: swiotlb_tbl_map_single without a pool');
  const r = swiotlbTblMapSingle(pool, dev.swiotlbDev, phys, size, {
    dir,
    attrs,
    cpu: dev.ctx.cpu,
    allocAlignMask,
    allocSize,
  });
  if (r.ok) {
    dev.dmaSkipSync = false;
    dev.ctx.stats.swiotlbMaps++;
  }
  return r;
}

/** `swiotlb_tbl_unmap_single()` when `phys` is a bounce buffer; a no-op otherwise (as the kernel's wrapper). */
export function swiotlbTblUnmapSingleDev(
  dev: DmaDevice,
  phys: bigint,
  size: Bytes,
  dir: DmaDirection,
  attrs: number,
): void {
  const pool = dev.ctx.swiotlb;
  if (pool === null || !isSwiotlbBuffer(pool, phys)) return;
  swiotlbTblUnmapSingle(pool, dev.swiotlbDev, phys as PhysAddr, size, dir, attrs);
}

/** `swiotlb_sync_single_for_cpu()` when `phys` is a bounce buffer. */
export function swiotlbSyncForCpuDev(dev: DmaDevice, phys: bigint, size: Bytes, dir: DmaDirection): void {
  const pool = dev.ctx.swiotlb;
  if (pool !== null && isSwiotlbBuffer(pool, phys))
    swiotlbSyncSingleForCpu(pool, dev.swiotlbDev, phys as PhysAddr, size, dir);
}

/** `swiotlb_sync_single_for_device()` when `phys` is a bounce buffer. */
export function swiotlbSyncForDeviceDev(dev: DmaDevice, phys: bigint, size: Bytes, dir: DmaDirection): void {
  const pool = dev.ctx.swiotlb;
  if (pool !== null && isSwiotlbBuffer(pool, phys))
    swiotlbSyncSingleForDevice(pool, dev.swiotlbDev, phys as PhysAddr, size, dir);
}

/** `swiotlb_max_mapping_size()` of the device. */
export const swiotlbMaxMappingSizeDev = (dev: DmaDevice): Bytes => swiotlbMaxMappingSize(dev.swiotlbDev);

/** `arch_sync_dma_for_device()`: x86 caches are coherent, so only counted for non-coherent devices. */
export function archSyncDmaForDevice(dev: DmaDevice): void {
  dev.ctx.stats.archSyncForDevice++;
}
/** `arch_sync_dma_for_cpu()`. */
export function archSyncDmaForCpu(dev: DmaDevice): void {
  dev.ctx.stats.archSyncForCpu++;
}

/**
 * `swiotlb_map()`: bounce, then check the bounce buffer itself is reachable.
 * @returns the DMA address of the bounce buffer, or DMA_MAPPING_ERROR (pool full, or the pool
 *   beyond the device's mask: "swiotlb addr %pad+%zu overflow (mask %llx, bus limit %llx).").
 */
export function swiotlbMap(
  dev: DmaDevice,
  phys: PhysAddr,
  size: Bytes,
  dir: DmaDirection,
  attrs: number,
  capable: (dev: DmaDevice, addr: bigint, size: bigint, isRam: boolean) => boolean,
): DmaAddr {
  const r = swiotlbTblMapSingleDev(dev, phys, size, 0, dir, attrs);
  if (!r.ok) return DMA_MAPPING_ERROR;
  const tlb = r.value;
  const addr = physToDmaRaw(dev, tlb);
  if (!capable(dev, addr, size, true)) {
    swiotlbTblUnmapSingleDev(dev, tlb, size, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
    warnOnceDev(
      dev,
      'swiotlb-overflow',
      `swiotlb addr ${hexPad(addr, 16)}+${size} overflow (mask ${(dev.dmaMask ?? 0n).toString(16)}, bus limit ${dev.busDmaLimit.toString(16)}).`,
    );
    return DMA_MAPPING_ERROR;
  }
  if (!devIsDmaCoherent(dev) && (attrs & DMA_ATTR_SKIP_CPU_SYNC) === 0) archSyncDmaForDevice(dev);
  return dmaAddr(addr);
}

const warned = new WeakMap<DmaDevice, Set<string>>();
/** `dev_WARN_ONCE()`: print "<driver> <BDF>: text" once per device and kind. */
export function warnOnceDev(dev: DmaDevice, key: string, text: string): void {
  let s = warned.get(dev);
  if (!s) {
    s = new Set();
    warned.set(dev, s);
  }
  if (s.has(key)) return;
  s.add(key);
  dev.ctx.log.devWarn(dev.fn, text);
}
