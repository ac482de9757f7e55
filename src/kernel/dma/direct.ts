// dma-direct for one address range: bus offsets (`dma_range_map`), reachability (`dma_capable()`),
// bouncing through swiotlb when the device cannot reach a buffer, and the mask queries.
//
// Mirrors kernel/dma/direct.h (`dma_direct_map_phys()`, `dma_direct_unmap_phys()`, the sync helpers),
// include/linux/dma-direct.h (`translate_phys_to_dma()`, `dma_capable()`) and kernel/dma/direct.c
// (`dma_direct_supported()`, `dma_direct_get_required_mask()`, `dma_direct_max_mapping_size()`):
//
//   phys --dma_range_map--> dma_addr --dma_capable (mask, bus limit)?--yes--> dma_addr
//                                                      `--no--> swiotlb active? bounce : WARN + error
//
// x86 facts: caches are coherent with DMA unless the device says otherwise (then the arch sync calls
// are counted, not simulated); `dma_kmalloc_needs_bounce()` is always false (no
// CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC); ZONE_DMA is the low 16 MiB (`zone_dma_limit` = 24 bits).
// P2P memory is never bounced: 6.1 refuses it explicitly (`is_pci_p2pdma_page()` in
// `dma_direct_map_page()`); mainline dropped that test when it moved to physical addresses and relies
// on callers passing DMA_ATTR_MMIO, so the model keeps the 6.1 refusal in both profiles.

import {
  type Bytes,
  type DmaAddr,
  dmaAddr,
  hexPad,
  PAGE_SIZE_N,
  type PhysAddr,
  physAddr,
  U64_MASK,
} from '../../hw/addr.js';
import { type DmaDevice, devIsDmaCoherent, dmaGetMask, minNotZero } from './device.js';
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIT_MASK,
  DMA_MAPPING_ERROR,
  type DmaDirection,
} from './dma-types.js';
import { SIZE_MAX } from './map-ops.js';
import {
  archSyncDmaForCpu,
  archSyncDmaForDevice,
  isSwiotlbActive,
  isSwiotlbBufferOf,
  isSwiotlbForceBounce,
  physToDmaRaw,
  swiotlbMap,
  swiotlbMaxMappingSizeDev,
  swiotlbSyncForCpuDev,
  swiotlbSyncForDeviceDev,
  swiotlbTblUnmapSingleDev,
  warnOnceDev,
} from './swiotlb-map.js';

/** `zone_dma_limit` on x86: ZONE_DMA covers the low 16 MiB. */
export const ZONE_DMA_LIMIT = DMA_BIT_MASK(24);

/** `translate_phys_to_dma()` / `phys_to_dma()`: DMA_MAPPING_ERROR when no region covers `paddr`. */
export const physToDma = (dev: DmaDevice, paddr: bigint): DmaAddr => dmaAddr(physToDmaRaw(dev, paddr));

/** `translate_dma_to_phys()` / `dma_to_phys()`: `(phys_addr_t)-1` when no region covers `addr`. */
export function dmaToPhys(dev: DmaDevice, addr: bigint): PhysAddr {
  const map = dev.dmaRangeMap;
  if (map === null) return addr as PhysAddr;
  for (const m of map) {
    if (addr >= m.dmaStart && addr - m.dmaStart < m.size) return physAddr(addr - m.dmaStart + m.cpuStart);
  }
  return physAddr(U64_MASK);
}

/** `dma_capable()`: the whole range is below the mask and the bus limit (64-bit dma_addr_t). */
export function dmaCapable(dev: DmaDevice, addr: bigint, size: bigint, _isRam: boolean): boolean {
  if (addr === DMA_MAPPING_ERROR) return false;
  const end = BigInt.asUintN(64, addr + size - 1n);
  return end <= minNotZero(dev.dmaMask ?? 0n, dev.busDmaLimit);
}

const isP2pPage = (dev: DmaDevice, phys: bigint): boolean =>
  dev.ctx.p2p.providerOfPfn(Number(phys >> 12n)) !== null;

function overflow(dev: DmaDevice, addr: bigint, size: bigint): DmaAddr {
  warnOnceDev(
    dev,
    'direct-overflow',
    `DMA addr ${hexPad(addr, 16)}+${size} overflow (mask ${(dev.dmaMask ?? 0n).toString(16)}, bus limit ${dev.busDmaLimit.toString(16)}).`,
  );
  return DMA_MAPPING_ERROR;
}

/**
 * `dma_direct_map_phys()` (6.1 `dma_direct_map_page()` / `dma_direct_map_resource()`).
 * @returns the DMA address, or DMA_MAPPING_ERROR: the device cannot reach the buffer and it may not
 *   be bounced (MMIO, P2P memory, REQUIRE_COHERENT, no swiotlb: "DMA addr ... overflow" once), or the
 *   bounce failed (swiotlb full).
 */
export function dmaDirectMapPhys(
  dev: DmaDevice,
  phys: PhysAddr,
  size: Bytes,
  dir: DmaDirection,
  attrs: number,
): DmaAddr {
  const noBounce = DMA_ATTR_MMIO | (dev.ctx.version === '6.1' ? 0 : DMA_ATTR_REQUIRE_COHERENT);
  if (isSwiotlbForceBounce(dev)) {
    if ((attrs & noBounce) !== 0 || isP2pPage(dev, phys)) return DMA_MAPPING_ERROR;
    return swiotlbMap(dev, phys, size, dir, attrs, dmaCapable);
  }
  let addr: bigint;
  if ((attrs & DMA_ATTR_MMIO) !== 0) {
    // MMIO is handed over untranslated: the bus offset is the caller's business (P2P bus addresses).
    addr = phys;
    if (!dmaCapable(dev, addr, size, false)) return overflow(dev, addr, size);
  } else {
    addr = physToDmaRaw(dev, phys);
    if (!dmaCapable(dev, addr, size, true)) {
      if (isP2pPage(dev, phys)) return DMA_MAPPING_ERROR;
      if (isSwiotlbActive(dev) && (attrs & noBounce) === 0)
        return swiotlbMap(dev, phys, size, dir, attrs, dmaCapable);
      return overflow(dev, addr, size);
    }
  }
  if (!devIsDmaCoherent(dev) && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0)
    archSyncDmaForDevice(dev);
  return addr as DmaAddr;
}

/** `dma_direct_sync_single_for_cpu()`: cache maintenance, then copy a bounce buffer back per direction. */
export function dmaDirectSyncSingleForCpu(
  dev: DmaDevice,
  addr: DmaAddr,
  size: Bytes,
  dir: DmaDirection,
): void {
  const phys = dmaToPhys(dev, addr);
  if (!devIsDmaCoherent(dev)) archSyncDmaForCpu(dev);
  swiotlbSyncForCpuDev(dev, phys, size, dir);
}

/** `dma_direct_sync_single_for_device()`: copy into a bounce buffer per direction, then cache maintenance. */
export function dmaDirectSyncSingleForDevice(
  dev: DmaDevice,
  addr: DmaAddr,
  size: Bytes,
  dir: DmaDirection,
): void {
  const phys = dmaToPhys(dev, addr);
  swiotlbSyncForDeviceDev(dev, phys, size, dir);
  if (!devIsDmaCoherent(dev)) archSyncDmaForDevice(dev);
}

/** `dma_direct_unmap_phys()`: nothing for MMIO; else sync for the CPU and release a bounce buffer. */
export function dmaDirectUnmapPhys(
  dev: DmaDevice,
  addr: DmaAddr,
  size: Bytes,
  dir: DmaDirection,
  attrs: number,
): void {
  const nothing = DMA_ATTR_MMIO | (dev.ctx.version === '6.1' ? 0 : DMA_ATTR_REQUIRE_COHERENT);
  if ((attrs & nothing) !== 0) return;
  const phys = dmaToPhys(dev, addr);
  if ((attrs & DMA_ATTR_SKIP_CPU_SYNC) === 0) dmaDirectSyncSingleForCpu(dev, addr, size, dir);
  swiotlbTblUnmapSingleDev(dev, phys, size, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
}

/** `fls64()`: 1-based index of the highest set bit, 0 for 0. */
function fls64(x: bigint): number {
  let n = 0;
  for (let v = x; v > 0n; v >>= 1n) n++;
  return n;
}

/** `dma_direct_get_required_mask()`: the mask that reaches the last page of RAM. */
export function dmaDirectGetRequiredMask(dev: DmaDevice): bigint {
  const maxDma = physToDmaRaw(dev, dev.ctx.ramEnd - PAGE_SIZE_N);
  return (1n << BigInt(fls64(maxDma) - 1)) * 2n - 1n;
}

/**
 * `dma_direct_supported()`: any mask of 32 bits or more (ZONE_DMA32 exists); a smaller one must still
 * cover ZONE_DMA (or all of RAM, if smaller).
 */
export function dmaDirectSupported(dev: DmaDevice, mask: bigint): boolean {
  if (mask >= DMA_BIT_MASK(32)) return true;
  let minMask = dev.ctx.ramEnd - PAGE_SIZE_N;
  if (ZONE_DMA_LIMIT < minMask) minMask = ZONE_DMA_LIMIT;
  return mask >= physToDmaRaw(dev, minMask);
}

/** `dma_direct_all_ram_mapped()`: every RAM byte (0 .. ramEnd) is covered by the range map. */
export function dmaDirectAllRamMapped(dev: DmaDevice): boolean {
  const map = dev.dmaRangeMap;
  if (map === null) return true;
  let covered = 0n;
  for (const m of [...map].sort((a, b) => (a.cpuStart < b.cpuStart ? -1 : 1))) {
    if (m.cpuStart > covered) return false;
    const end = m.cpuStart + m.size;
    if (end > covered) covered = end;
  }
  return covered >= dev.ctx.ramEnd;
}

/** `dma_addressing_limited()`. */
export function dmaAddressingLimited(dev: DmaDevice): boolean {
  if (minNotZero(dmaGetMask(dev), dev.busDmaLimit) < dev.ops.getRequiredMask(dev)) return true;
  return !dmaDirectAllRamMapped(dev);
}

/** `dma_direct_max_mapping_size()`: a bouncing device is limited to one swiotlb segment. */
export function dmaDirectMaxMappingSize(dev: DmaDevice): bigint {
  if (isSwiotlbActive(dev) && (dmaAddressingLimited(dev) || isSwiotlbForceBounce(dev)))
    return swiotlbMaxMappingSizeDev(dev);
  return SIZE_MAX;
}

/** `dma_direct_need_sync()`: non-coherent devices, and bounce buffers, need syncs. */
export function dmaDirectNeedSync(dev: DmaDevice, addr: DmaAddr): boolean {
  return !devIsDmaCoherent(dev) || isSwiotlbBufferOf(dev, dmaToPhys(dev, addr));
}
