// The IOVA-based ("two-step") DMA API of drivers/iommu/dma-iommu.c (6.16+): allocate one IOVA range
// up front, link physical ranges into it without IOTLB syncs, sync once, and later unlink/destroy.
//
//   dma_iova_try_alloc(phys, size)    IOVA = alloc(iova_align(size + (phys & granule-1)))
//   dma_iova_link(phys0, offset 0)    [pad|----- phys0 -----]     only the first link may start mid-granule
//   dma_iova_link(phys1, offset n)                           [--- phys1 ---]   offset n granule aligned
//   dma_iova_sync(0, total)           iommu_sync_map() once
//   dma_iova_destroy(total)           unmap everything, free the IOVA (through the flush queue if lazy)
//
// Return conventions: try_alloc is a boolean ("use the streaming API" when false); link returns 0 or
// -EIO (a later link starting mid-granule), -EOPNOTSUPP (REQUIRE_COHERENT refused, newest), -EPERM (an
// untrusted device would have to bounce MMIO/REQUIRE_COHERENT memory), -ENOMEM (bounce failed), or the
// IOMMU's map error. The state's size carries DMA_IOVA_USE_SWIOTLB in bit 63 once a link bounced.

import { type Bytes, bytes, dmaAddr, type PhysAddr, physAddr } from '../../hw/addr.js';
import type { DmaDevice } from '../dma/device.js';
import { devIsDmaCoherent, dmaGetMask } from '../dma/device.js';
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_MAPPING_ERROR,
  type DmaDirection,
} from '../dma/dma-types.js';
import { DMA_IOVA_USE_SWIOTLB, type DmaIovaOps, type DmaIovaState } from '../dma/map-ops.js';
import { archSyncDmaForCpu, archSyncDmaForDevice, swiotlbTblUnmapSingleDev } from '../dma/swiotlb-map.js';
import { err, type KResult, ok } from '../errno.js';
import {
  cookieOf,
  devUseSwiotlb,
  dmaInfoToProt,
  iommuDmaAllocIova,
  iommuDmaFreeIova,
  iommuDmaMapSwiotlb,
  iovaAlignB,
  iovaOff,
  iovaUnaligned,
} from './dma-iommu.js';
import {
  iommuIotlbGatherInit,
  iommuIotlbSync,
  iommuIovaToPhys,
  iommuMapNosync,
  iommuSyncMap,
  iommuUnmapFast,
} from './iommu.js';

const sizeOf = (s: DmaIovaState): bigint => s.size & ~DMA_IOVA_USE_SWIOTLB;

function warnOnce(dev: DmaDevice, what: string): void {
  dev.ctx.log.printk('warn', `WARNING: ${what} (${dev.name})`);
}

/** `dma_iova_try_alloc()` after the state was zeroed. */
function tryAlloc(dev: DmaDevice, state: DmaIovaState, phys: PhysAddr, size: Bytes): boolean {
  const c = cookieOf(dev);
  const off = iovaOff(c, phys);
  if (size === 0n) {
    warnOnce(dev, 'dma_iova_try_alloc: WARN_ON_ONCE(!size)');
    return false;
  }
  if ((size & DMA_IOVA_USE_SWIOTLB) !== 0n) {
    warnOnce(dev, 'dma_iova_try_alloc: WARN_ON_ONCE(size & DMA_IOVA_USE_SWIOTLB)');
    return false;
  }
  const addr = iommuDmaAllocIova(dev, iovaAlignB(c, size + off), dmaGetMask(dev));
  if (addr === 0n) return false;
  state.addr = dmaAddr(addr + off);
  state.size = size;
  return true;
}

/** `dma_iova_free()`: the whole allocation (every link must be gone). */
function free(dev: DmaDevice, state: DmaIovaState): void {
  const c = cookieOf(dev);
  const pad = iovaOff(c, state.addr);
  iommuDmaFreeIova(dev, state.addr - pad, iovaAlignB(c, sizeOf(state) + pad), null);
}

/** `__dma_iova_link()`: cache maintenance, then map without an IOTLB sync. */
function linkRange(
  dev: DmaDevice,
  addr: bigint,
  phys: bigint,
  size: bigint,
  dir: DmaDirection,
  attrs: number,
): KResult<void> {
  const coherent = devIsDmaCoherent(dev);
  if (!coherent && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0) archSyncDmaForDevice(dev);
  return iommuMapNosync(
    cookieOf(dev).domain,
    dmaAddr(addr),
    physAddr(phys),
    bytes(size),
    dmaInfoToProt(dir, coherent, attrs),
  );
}

/** `iommu_dma_iova_bounce_and_link()`: bounce a partial granule and link the bounce slot. */
function bounceAndLink(
  dev: DmaDevice,
  addr: bigint,
  phys: bigint,
  len: bigint,
  dir: DmaDirection,
  attrs: number,
  pad: bigint,
): KResult<void> {
  const c = cookieOf(dev);
  const tlb = iommuDmaMapSwiotlb(dev, physAddr(phys), bytes(len), dir, attrs);
  if (tlb === DMA_MAPPING_ERROR) return err('ENOMEM', 'swiotlb bounce failed');
  const r = linkRange(dev, addr - pad, tlb - pad, iovaAlignB(c, len), dir, attrs);
  if (!r.ok) swiotlbTblUnmapSingleDev(dev, tlb, bytes(len), dir, attrs);
  return r;
}

/** `iommu_dma_iova_link_swiotlb()`: bounce the unaligned head and tail, link the middle directly. */
function linkSwiotlb(
  dev: DmaDevice,
  state: DmaIovaState,
  phys: bigint,
  offset: bigint,
  sizeIn: bigint,
  dir: DmaDirection,
  attrs: number,
): KResult<void> {
  const c = cookieOf(dev);
  const startPad = iovaOff(c, phys);
  const endPad = iovaOff(c, phys + sizeIn);
  const addr = state.addr + offset;
  let size = sizeIn;
  let mapped = 0n;
  if (startPad !== 0n) {
    const len = size < BigInt(c.granule) - startPad ? size : BigInt(c.granule) - startPad;
    const r = bounceAndLink(dev, addr, phys, len, dir, attrs, startPad);
    if (!r.ok) return r;
    state.size |= DMA_IOVA_USE_SWIOTLB;
    mapped += len;
    size -= len;
    if (size === 0n) return ok(undefined);
  }
  size -= endPad;
  let r = linkRange(dev, addr + mapped, phys + mapped, size, dir, attrs);
  if (r.ok) {
    mapped += size;
    if (endPad !== 0n) {
      r = bounceAndLink(dev, addr + mapped, phys + mapped, endPad, dir, attrs, 0n);
      if (r.ok) state.size |= DMA_IOVA_USE_SWIOTLB;
    }
  }
  if (!r.ok) unlink(dev, state, 0n, mapped, dir, attrs, false);
  return r;
}

/** `dma_iova_link()`. */
function link(
  dev: DmaDevice,
  state: DmaIovaState,
  phys: PhysAddr,
  offset: Bytes,
  size: Bytes,
  dir: DmaDirection,
  attrs: number,
): KResult<void> {
  const c = cookieOf(dev);
  const pad = iovaOff(c, phys);
  if (pad !== 0n && offset > 0n) {
    warnOnce(dev, 'dma_iova_link: WARN_ON_ONCE(iova_start_pad && offset > 0)');
    return err('EIO', 'only the first link may start inside a granule');
  }
  if (dev.ctx.version !== '6.1') {
    if ((state.size & DMA_IOVA_USE_SWIOTLB) !== 0n && (attrs & DMA_ATTR_REQUIRE_COHERENT) !== 0) {
      warnOnce(dev, 'dma_iova_link: REQUIRE_COHERENT on a state that used swiotlb');
      return err('EOPNOTSUPP', 'REQUIRE_COHERENT after a bounced link');
    }
    if (!devIsDmaCoherent(dev) && (attrs & DMA_ATTR_REQUIRE_COHERENT) !== 0)
      return err('EOPNOTSUPP', 'REQUIRE_COHERENT on a non-coherent device');
  }
  if (devUseSwiotlb(dev) && iovaUnaligned(c, phys, size)) {
    const p2p = dev.ctx.p2p.providerOfPfn(Number(phys >> 12n)) !== null;
    if ((attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) !== 0 || p2p)
      return err('EPERM', 'memory that may not be bounced is not granule aligned');
    return linkSwiotlb(dev, state, phys, offset, size, dir, attrs);
  }
  return linkRange(dev, state.addr + offset - pad, phys - pad, iovaAlignB(c, size + pad), dir, attrs);
}

/** `dma_iova_sync()`: one `iommu_sync_map()` over the granule-aligned range. */
function sync(dev: DmaDevice, state: DmaIovaState, offset: Bytes, size: Bytes): KResult<void> {
  const c = cookieOf(dev);
  const addr = state.addr + offset;
  const pad = iovaOff(c, addr);
  return iommuSyncMap(c.domain, dmaAddr(addr - pad), bytes(iovaAlignB(c, size + pad)));
}

/** `iommu_dma_iova_unlink_range_slow()`: per granule, sync for the CPU and release bounce slots. */
function unlinkSlow(dev: DmaDevice, addrIn: bigint, size: bigint, dir: DmaDirection, attrs: number): void {
  const c = cookieOf(dev);
  const sync = !devIsDmaCoherent(dev) && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0;
  const end = addrIn + size;
  let addr = addrIn;
  let pad = iovaOff(c, addr);
  do {
    const phys = iommuIovaToPhys(c.domain, dmaAddr(addr));
    if (phys === 0n) {
      warnOnce(dev, 'iommu_dma_iova_unlink_range_slow: WARN_ON(!phys)');
      return;
    }
    const step = BigInt(c.granule) - pad;
    const len = end - addr < step ? end - addr : step;
    if (sync) archSyncDmaForCpu(dev);
    swiotlbTblUnmapSingleDev(dev, phys, bytes(len), dir, attrs);
    addr += len;
    pad = 0n;
  } while (addr < end);
}

/** `__iommu_dma_iova_unlink()`: unmap, sync or queue, and with `freeIova` free the IOVA (destroy). */
function unlink(
  dev: DmaDevice,
  state: DmaIovaState,
  offset: Bytes | bigint,
  sizeIn: Bytes | bigint,
  dir: DmaDirection,
  attrs: number,
  freeIova: boolean,
): void {
  const c = cookieOf(dev);
  let addr: bigint = state.addr + offset;
  const pad = iovaOff(c, addr);
  const slow = !devIsDmaCoherent(dev) && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0;
  if ((state.size & DMA_IOVA_USE_SWIOTLB) !== 0n || slow) unlinkSlow(dev, addr, sizeIn, dir, attrs);
  const gather = iommuIotlbGatherInit();
  gather.queued = freeIova && c.fq !== null;
  const size = iovaAlignB(c, sizeIn + pad);
  addr -= pad;
  const unmapped = iommuUnmapFast(c.domain, dmaAddr(addr), bytes(size), gather);
  if (unmapped !== size) warnOnce(dev, `__iommu_dma_iova_unlink: unmapped ${unmapped} != ${size}`);
  if (!gather.queued) iommuIotlbSync(c.domain, gather);
  if (freeIova) iommuDmaFreeIova(dev, addr, size, gather);
}

/** The two-step API of dma-iommu, as the consumer functions in src/kernel/dma/iova-api.ts call it. */
export const iommuDmaIovaOps = {
  tryAlloc,
  free,
  link,
  sync,
  unlink,
  granule: (dev: DmaDevice) => cookieOf(dev).granule,
} satisfies DmaIovaOps;
