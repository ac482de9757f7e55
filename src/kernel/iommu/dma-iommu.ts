// dma-iommu: the DMA-mapping implementation for devices behind an IOMMU (drivers/iommu/dma-iommu.c).
// A mapping takes an IOVA range from the domain's allocator (iova.c), maps it in the domain's page
// table (iommu.c), and hands the device the IOVA; unmapping clears the page table and either
// invalidates the IOTLB at once (strict) or queues the IOVA for a later batched flush (lazy, DMA-FQ).
//
//   dma_map_phys --> iommu_dma_map_phys: untrusted + unaligned? bounce through swiotlb (never P2P/MMIO)
//                     --> __iommu_dma_map: alloc_iova_fast (32-bit first for PCI) --> iommu_map
//   dma_unmap_phys --> __iommu_dma_unmap: iommu_unmap_fast --> strict: iotlb_sync + free_iova_fast
//                                                          `-> lazy: queue_iova (flush-queue.ts)
//
// Profiles: newest tries the 32-bit space first until it fails once per device, then logs "Using
// %d-bit DMA addresses" and stays 64-bit; 6.1 tries it on every allocation, silently. Scatterlists are
// in dma-iommu-sg.ts, the two-step IOVA API in dma-iommu-iova.ts, domain set-up in dma-iommu-setup.ts.

import { type Bytes, bytes, type DmaAddr, type PhysAddr, physAddr, U64_MASK } from '../../hw/addr.js';
import type { DmaDevice } from '../dma/device.js';
import {
  devIsDmaCoherent,
  devIsUntrusted,
  dmaGetMask,
  dmaGetMinAlignMask,
  minNotZero,
} from '../dma/device.js';
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_PRIVILEGED,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIT_MASK,
  DMA_MAPPING_ERROR,
  type DmaDirection,
} from '../dma/dma-types.js';
import {
  archSyncDmaForCpu,
  archSyncDmaForDevice,
  isSwiotlbActive,
  swiotlbSyncForCpuDev,
  swiotlbSyncForDeviceDev,
  swiotlbTblMapSingleDev,
  swiotlbTblUnmapSingleDev,
  warnOnceDev,
} from '../dma/swiotlb-map.js';
import { type FlushQueue, queueIova } from './flush-queue.js';
import {
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
  type IommuDomain,
  type IommuIotlbGather,
  iommuIotlbGatherInit,
  iommuIotlbSync,
  iommuIovaToPhys,
  iommuMap,
  iommuUnmapFast,
} from './iommu.js';
import { allocIovaFast, freeIovaFast, type IovaDomain } from './iova.js';

/** `struct iommu_dma_cookie` (the IOVA flavour). */
export interface IommuDmaCookie {
  readonly domain: IommuDomain;
  readonly iovad: IovaDomain;
  /** IOVA granule in bytes and its log2. */
  readonly granule: number;
  readonly shift: number;
  /** `fq_domain != NULL`: the flush queue of a lazy domain; null for strict. */
  fq: FlushQueue | null;
  /** Hot-path constants: granule - 1 and the shift as bigints, the last pfn below 4 GiB. */
  readonly gMask: bigint;
  readonly shiftB: bigint;
  readonly limit32Pfn: number;
  /** The unmap path's gather (a stack variable in the kernel; one per cookie here, reset per use). */
  readonly gather: IommuIotlbGather;
}

const MASK32 = DMA_BIT_MASK(32);

/** The cookie of a domain whose IOVA domain has granule 2^shift. */
export function newIommuDmaCookie(domain: IommuDomain, iovad: IovaDomain, granule: number): IommuDmaCookie {
  const shift = Math.log2(granule);
  return {
    domain,
    iovad,
    granule,
    shift,
    fq: null,
    gMask: BigInt(granule - 1),
    shiftB: BigInt(shift),
    limit32Pfn: Number(MASK32 >> BigInt(shift)),
    gather: iommuIotlbGatherInit(),
  };
}

export function cookieOf(dev: DmaDevice): IommuDmaCookie {
  const io = dev.iommu;
  if (io === null) throw new Error(`BUG: ${dev.name} uses dma-iommu without an IOMMU domain`);
  return io.cookie as IommuDmaCookie;
}

/** `iova_offset()` on bigints. */
export const iovaOff = (c: IommuDmaCookie, addr: bigint): bigint => addr & c.gMask;
/** `iova_align()` on bigints. */
export const iovaAlignB = (c: IommuDmaCookie, size: bigint): bigint => (size + c.gMask) & ~c.gMask;

/** `dma_info_to_prot()`: IOMMU_* permissions for a direction and attributes. */
export function dmaInfoToProt(dir: DmaDirection, coherent: boolean, attrs: number): number {
  let prot = (attrs & DMA_ATTR_MMIO) !== 0 ? IOMMU_MMIO : coherent ? IOMMU_CACHE : 0;
  if ((attrs & DMA_ATTR_PRIVILEGED) !== 0) prot |= IOMMU_PRIV;
  if (dir === 'bidirectional') return prot | IOMMU_READ | IOMMU_WRITE;
  if (dir === 'to-device') return prot | IOMMU_READ;
  if (dir === 'from-device') return prot | IOMMU_WRITE;
  return 0;
}

/** `bits_per()`: bits needed to hold `n`. */
function bitsPer(n: bigint): number {
  let b = 0;
  for (let v = n; v > 0n; v >>= 1n) b++;
  return b;
}

/**
 * `iommu_dma_alloc_iova()`: `size` bytes (a granule multiple) below the device's limit.
 * @returns the IOVA, or 0 when the space is exhausted.
 */
export function iommuDmaAllocIova(dev: DmaDevice, size: bigint, dmaLimit: bigint): bigint {
  const c = cookieOf(dev);
  const iommu = dev.iommu!;
  const len = Number(size >> c.shiftB);
  let limit = minNotZero(dmaLimit, dev.busDmaLimit);
  const geo = c.domain.geometry;
  if (geo.forceAperture && geo.apertureEnd < limit) limit = geo.apertureEnd;
  const cpu = dev.ctx.cpu;
  if (limit > MASK32 && iommu.pci32bitWorkaround) {
    const r = allocIovaFast(c.iovad, len, c.limit32Pfn, false, cpu);
    if (r.ok) return BigInt(r.value) << c.shiftB;
    if (dev.ctx.version !== '6.1') {
      iommu.pci32bitWorkaround = false;
      dev.ctx.log.devInfo(dev.fn, `Using ${bitsPer(limit)}-bit DMA addresses`);
    }
  }
  const r = allocIovaFast(c.iovad, len, Number(limit >> c.shiftB), true, cpu);
  return r.ok ? BigInt(r.value) << c.shiftB : 0n;
}

/** `iommu_dma_free_iova()`: straight back to the allocator, or via the flush queue when queued. */
export function iommuDmaFreeIova(
  dev: DmaDevice,
  iova: bigint,
  size: bigint,
  gather: IommuIotlbGather | null,
): void {
  const c = cookieOf(dev);
  const pfn = Number(iova >> c.shiftB);
  const pages = Number(size >> c.shiftB);
  if (gather?.queued && c.fq !== null) queueIova(c.fq, pfn, pages, dev.ctx.cpu);
  else freeIovaFast(c.iovad, pfn, pages, dev.ctx.cpu);
}

/** `__iommu_dma_unmap()`: unmap the granule-aligned range; strict syncs now, lazy queues the IOVA. */
export function iommuDmaUnmapRange(dev: DmaDevice, addrIn: bigint, sizeIn: bigint): void {
  const c = cookieOf(dev);
  const off = iovaOff(c, addrIn);
  const addr = addrIn - off;
  const size = iovaAlignB(c, sizeIn + off);
  const gather = c.gather;
  gather.start = U64_MASK;
  gather.end = 0n;
  gather.pgsize = 0n;
  gather.queued = c.fq !== null;
  // Values are already u64 here: cast, do not re-wrap (this is the hot path of every unmap).
  const unmapped = iommuUnmapFast(c.domain, addr as DmaAddr, size as Bytes, gather);
  if (unmapped !== size)
    dev.ctx.log.printk('warn', `WARNING: __iommu_dma_unmap: unmapped ${unmapped} != ${size}`);
  if (!gather.queued) iommuIotlbSync(c.domain, gather);
  iommuDmaFreeIova(dev, addr, size, gather);
}

/**
 * `__iommu_dma_map()`: allocate an IOVA for [phys, phys + size) and map it.
 * @returns the IOVA plus the granule offset of `phys`, or DMA_MAPPING_ERROR (min_align_mask larger
 *   than the granule: "Unsupported alignment constraint"; IOVA space exhausted; iommu_map failed).
 */
export function iommuDmaMapRange(
  dev: DmaDevice,
  phys: bigint,
  sizeIn: bigint,
  prot: number,
  mask: bigint,
): DmaAddr {
  const c = cookieOf(dev);
  const off = iovaOff(c, phys);
  if (dmaGetMinAlignMask(dev) > c.granule - 1) {
    warnOnceDev(dev, 'align', 'Unsupported alignment constraint');
    return DMA_MAPPING_ERROR;
  }
  const size = iovaAlignB(c, sizeIn + off);
  const iova = iommuDmaAllocIova(dev, size, mask);
  if (iova === 0n) return DMA_MAPPING_ERROR;
  if (!iommuMap(c.domain, iova as DmaAddr, (phys - off) as PhysAddr, size as Bytes, prot).ok) {
    iommuDmaFreeIova(dev, iova, size, null);
    return DMA_MAPPING_ERROR;
  }
  return (iova + off) as DmaAddr;
}

/**
 * `dev_use_swiotlb()`: untrusted devices bounce unaligned buffers (x86: no kmalloc bouncing). Like
 * CONFIG_SWIOTLB it does not ask whether a pool exists; `iommuDmaMapSwiotlb()` finds out.
 */
export const devUseSwiotlb = (dev: DmaDevice): boolean => devIsUntrusted(dev);

/** Is any byte of [phys, phys + size) outside whole granules (`iova_unaligned()`)? */
export const iovaUnaligned = (c: IommuDmaCookie, phys: bigint, size: bigint): boolean =>
  iovaOff(c, phys | size) !== 0n;

/**
 * `iommu_dma_map_swiotlb()`: bounce into a granule-aligned slot; for untrusted devices the padding
 * around the data in the granule is zeroed so they see no stale kernel bytes.
 * @returns the bounce buffer, or DMA_MAPPING_ERROR (no pool: "DMA bounce buffers are inactive, unable
 *   to map unaligned transaction."; pool full).
 */
export function iommuDmaMapSwiotlb(
  dev: DmaDevice,
  phys: PhysAddr,
  size: Bytes,
  dir: DmaDirection,
  attrs: number,
): bigint {
  const c = cookieOf(dev);
  if (!isSwiotlbActive(dev)) {
    warnOnceDev(
      dev,
      'bounce-inactive',
      'DMA bounce buffers are inactive, unable to map unaligned transaction.',
    );
    return DMA_MAPPING_ERROR;
  }
  const allocSize = dev.ctx.version === '6.1' ? bytes(iovaAlignB(c, size)) : undefined;
  const r = swiotlbTblMapSingleDev(dev, phys, size, c.granule - 1, dir, attrs, allocSize);
  if (!r.ok) return DMA_MAPPING_ERROR;
  const tlb = r.value as bigint;
  if (devIsUntrusted(dev)) {
    const pre = tlb - (tlb & ~BigInt(c.granule - 1));
    if (pre > 0n) dev.ctx.memory.write(physAddr(tlb - pre), new Uint8Array(Number(pre)));
    const end = tlb + size;
    const post = iovaAlignB(c, end) - end;
    if (post > 0n) dev.ctx.memory.write(physAddr(end), new Uint8Array(Number(post)));
  }
  return tlb;
}

/**
 * `iommu_dma_map_phys()`.
 * @returns the IOVA, or DMA_MAPPING_ERROR: a bounce was needed but not allowed (MMIO,
 *   REQUIRE_COHERENT, P2P memory) or failed, or `__iommu_dma_map()` failed.
 */
export function iommuDmaMapPhys(
  dev: DmaDevice,
  physIn: PhysAddr,
  size: Bytes,
  dir: DmaDirection,
  attrs: number,
): DmaAddr {
  const c = cookieOf(dev);
  const coherent = devIsDmaCoherent(dev);
  const prot = dmaInfoToProt(dir, coherent, attrs);
  const noBounce = DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT;
  let phys: bigint = physIn;
  if (devUseSwiotlb(dev) && iovaUnaligned(c, phys, size)) {
    // P2P memory is never bounced (see direct.ts); MMIO and REQUIRE_COHERENT refuse as in mainline.
    if ((attrs & noBounce) !== 0 || dev.ctx.p2p.providerOfPfn(Number(phys >> 12n)) !== null)
      return DMA_MAPPING_ERROR;
    phys = iommuDmaMapSwiotlb(dev, physIn, size, dir, attrs);
    if (phys === DMA_MAPPING_ERROR) return DMA_MAPPING_ERROR;
  }
  if (!coherent && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0) archSyncDmaForDevice(dev);
  const iova = iommuDmaMapRange(dev, phys, size, prot, dmaGetMask(dev));
  if (iova === DMA_MAPPING_ERROR && (attrs & noBounce) === 0)
    swiotlbTblUnmapSingleDev(dev, phys, size, dir, attrs);
  return iova;
}

/** `iommu_dma_unmap_phys()`: sync for the CPU, unmap, then release a bounce buffer (copying back per direction). */
export function iommuDmaUnmapPhys(
  dev: DmaDevice,
  handle: DmaAddr,
  size: Bytes,
  dir: DmaDirection,
  attrs: number,
): void {
  if ((attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) !== 0) {
    iommuDmaUnmapRange(dev, handle, size);
    return;
  }
  const phys = iommuIovaToPhys(cookieOf(dev).domain, handle);
  if (phys === 0n) {
    dev.ctx.log.printk('warn', `WARNING: iommu_dma_unmap_phys: WARN_ON(!phys) for ${dev.name}`);
    return;
  }
  if ((attrs & DMA_ATTR_SKIP_CPU_SYNC) === 0 && !devIsDmaCoherent(dev)) archSyncDmaForCpu(dev);
  iommuDmaUnmapRange(dev, handle, size);
  swiotlbTblUnmapSingleDev(dev, phys, size, dir, attrs);
}

/** `iommu_dma_sync_single_for_cpu()`. */
export function iommuDmaSyncSingleForCpu(
  dev: DmaDevice,
  handle: DmaAddr,
  size: Bytes,
  dir: DmaDirection,
): void {
  if (devIsDmaCoherent(dev) && !devUseSwiotlb(dev)) return;
  const phys = iommuIovaToPhys(cookieOf(dev).domain, handle);
  if (!devIsDmaCoherent(dev)) archSyncDmaForCpu(dev);
  swiotlbSyncForCpuDev(dev, phys, size, dir);
}

/** `iommu_dma_sync_single_for_device()`. */
export function iommuDmaSyncSingleForDevice(
  dev: DmaDevice,
  handle: DmaAddr,
  size: Bytes,
  dir: DmaDirection,
): void {
  if (devIsDmaCoherent(dev) && !devUseSwiotlb(dev)) return;
  const phys = iommuIovaToPhys(cookieOf(dev).domain, handle);
  swiotlbSyncForDeviceDev(dev, phys, size, dir);
  if (!devIsDmaCoherent(dev)) archSyncDmaForDevice(dev);
}
