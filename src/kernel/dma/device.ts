// The DMA fields of `struct device` for one PCI function: masks, bus limit, bus offsets, coherence,
// trust, which mapping ops it uses, `dma_skip_sync`, `dma_parms`, and its IOMMU state.
//
// Mirrors include/linux/device.h (dma_mask, coherent_dma_mask, bus_dma_limit, dma_range_map,
// dma_coherent, dma_skip_sync, dma_iommu, dma_parms), include/linux/dma-mapping.h (dma_get_mask,
// dma_get_max_seg_size, dma_get_seg_boundary, dma_get_min_align_mask) and the PCI core's defaults
// (drivers/pci/probe.c: 32-bit streaming and coherent masks, 64 KiB max segment, 4 GiB boundary).

import type { BusAddr, DmaAddr, PhysAddr } from '../../hw/addr.js';
import type { PciFunction } from '../../hw/pci.js';
import type { IommuDomain } from '../iommu/iommu.js';
import type { DmaContext } from './dma-context.js';
import { DMA_BIT_MASK } from './dma-types.js';
import type { DmaMapOps } from './map-ops.js';
import type { SwiotlbDevice } from './swiotlb.js';

/** `struct bus_dma_region`: CPU physical range [cpuStart, cpuStart + size) seen by the device at dmaStart. */
export interface BusDmaRegion {
  readonly cpuStart: PhysAddr;
  readonly dmaStart: DmaAddr | BusAddr;
  readonly size: bigint;
}

/**
 * What dma-iommu keeps per device (`dev->iommu` plus the domain's cookie). The cookie's type lives in
 * src/kernel/iommu/dma-iommu.ts; the DMA core only passes it along.
 */
export interface DevIommu {
  readonly domain: IommuDomain;
  /** `iommu_dma_cookie` of the domain (shared by the devices of one IOMMU group). */
  readonly cookie: unknown;
  /** `dev->iommu->pci_32bit_workaround`: try below 4 GiB first (cleared for good after one miss, newest). */
  pci32bitWorkaround: boolean;
}

/** One device's DMA state. Mutable where the kernel's fields are written after probe. */
export interface DmaDevice {
  readonly fn: PciFunction;
  readonly ctx: DmaContext;
  /** `pci_name()`. */
  readonly name: string;
  /** `*dev->dma_mask`; null when the device has no mask storage (`!dev->dma_mask`). */
  dmaMask: bigint | null;
  coherentDmaMask: bigint;
  /** `dev->bus_dma_limit`: 0 when the bus imposes none. */
  busDmaLimit: bigint;
  /** `dev->dma_range_map`: null maps CPU physical addresses 1:1 (no bus offset). */
  dmaRangeMap: readonly BusDmaRegion[] | null;
  /** `dev_is_dma_coherent()`. */
  coherent: boolean;
  /** `pci_dev->untrusted` (external-facing port, e.g. Thunderbolt): dma-iommu bounces unaligned buffers. */
  untrusted: boolean;
  /** The mapping implementation chosen at probe (`iommu_setup_dma_ops()`). */
  ops: DmaMapOps;
  /** `dev->dma_skip_sync`: no sync is ever needed (coherent, nothing bounced so far). */
  dmaSkipSync: boolean;
  /** `dma_parms->max_segment_size`. */
  maxSegSize: number;
  /** `dma_parms->segment_boundary_mask`. */
  segBoundaryMask: bigint;
  /** `dma_parms->min_align_mask`. */
  minAlignMask: number;
  /** dma-iommu state; null for devices on dma-direct. */
  iommu: DevIommu | null;
  /** `dev->dma_io_tlb_mem->force_bounce` (swiotlb=force, confidential-computing guests). */
  forceBounce: boolean;
  /** The device as swiotlb sees it (name, alignment, boundary, address translation). */
  readonly swiotlbDev: SwiotlbDevice;
  /** Dense id of the device in its context (debug ledger and typed arrays). */
  readonly id: number;
}

/** PCI core default masks: `pci_setup_device()` gives 32-bit streaming and coherent masks. */
export const PCI_DEFAULT_DMA_MASK = DMA_BIT_MASK(32);
/** `pci_device_add()`: `dma_set_max_seg_size(dev, 65536)`. */
export const PCI_DEFAULT_MAX_SEG_SIZE = 65536;
/** `pci_device_add()`: `dma_set_seg_boundary(dev, 0xffffffff)`. */
export const PCI_DEFAULT_SEG_BOUNDARY = 0xffff_ffffn;

/** `dma_get_mask()`: the streaming mask, or 32 bits when none is set. */
export function dmaGetMask(dev: DmaDevice): bigint {
  return dev.dmaMask !== null && dev.dmaMask !== 0n ? dev.dmaMask : DMA_BIT_MASK(32);
}

/** `dma_get_max_seg_size()`. */
export const dmaGetMaxSegSize = (dev: DmaDevice): number => dev.maxSegSize;
/** `dma_get_seg_boundary()`. */
export const dmaGetSegBoundary = (dev: DmaDevice): bigint => dev.segBoundaryMask;
/** `dma_get_min_align_mask()`. */
export const dmaGetMinAlignMask = (dev: DmaDevice): number => dev.minAlignMask;
/** `dev_is_dma_coherent()`. */
export const devIsDmaCoherent = (dev: DmaDevice): boolean => dev.coherent;
/** `dev_is_untrusted()`. */
export const devIsUntrusted = (dev: DmaDevice): boolean => dev.untrusted;

/** `min_not_zero()` on masks and limits. */
export function minNotZero(a: bigint, b: bigint): bigint {
  if (a === 0n) return b;
  if (b === 0n) return a;
  return a < b ? a : b;
}

/** `dma_set_max_seg_size()`. */
export function dmaSetMaxSegSize(dev: DmaDevice, size: number): void {
  if (!Number.isInteger(size) || size <= 0 || size > 0xffff_ffff) throw new RangeError(`max seg ${size}`);
  dev.maxSegSize = size;
}

/** `dma_set_seg_boundary()`: the mask must be 2^n - 1 (the kernel BUGs otherwise; here it throws). */
export function dmaSetSegBoundary(dev: DmaDevice, mask: bigint): void {
  if (mask < 0n || (mask & (mask + 1n)) !== 0n) throw new Error(`BUG: segment boundary ${mask.toString(16)}`);
  dev.segBoundaryMask = mask;
}

/** `dma_set_min_align_mask()`. */
export function dmaSetMinAlignMask(dev: DmaDevice, mask: number): void {
  if (!Number.isInteger(mask) || mask < 0 || (mask & (mask + 1)) !== 0) throw new RangeError(`align ${mask}`);
  dev.minAlignMask = mask;
}
