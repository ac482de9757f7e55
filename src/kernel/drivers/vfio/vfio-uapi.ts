// The VFIO uAPI pieces the dma-buf feature uses (include/uapi/linux/vfio.h, include/linux/vfio.h,
// drivers/vfio/pci/vfio_pci_dmabuf.c validate_dmabuf_input): feature flags, the feature payload, the
// generic vfio_check_feature() and the range validation, each with the kernel's errno.

import { type Bytes, bytes, PAGE_SIZE_N } from '../../../hw/addr.js';
import { DMA_IOVA_USE_SWIOTLB } from '../../dma/map-ops.js';
import { err, type KResult, ok } from '../../errno.js';

export const VFIO_DEVICE_FEATURE_MASK = 0xffff;
export const VFIO_DEVICE_FEATURE_GET = 1 << 16;
export const VFIO_DEVICE_FEATURE_SET = 1 << 17;
export const VFIO_DEVICE_FEATURE_PROBE = 1 << 18;
/** `VFIO_DEVICE_FEATURE_DMA_BUF` (6.19). */
export const VFIO_DEVICE_FEATURE_DMA_BUF = 11;
/** `VFIO_PCI_ROM_REGION_INDEX`: regions 0..5 are the BARs. */
export const VFIO_PCI_ROM_REGION_INDEX = 6;
/** `sizeof(struct vfio_device_feature_dma_buf)` without its flexible array. */
export const VFIO_DEVICE_FEATURE_DMA_BUF_SIZE = 16;
/** `sizeof(struct vfio_region_dma_range)`. */
export const VFIO_REGION_DMA_RANGE_SIZE = 16;
/** `KMALLOC_MAX_SIZE` on x86-64 (1 << (MAX_PAGE_ORDER + PAGE_SHIFT)): the most memdup_array_user() takes. */
export const KMALLOC_MAX_SIZE = 4 * 1024 * 1024;

/** `struct vfio_region_dma_range`. */
export interface VfioRegionDmaRange {
  readonly offset: bigint;
  readonly length: bigint;
}

/**
 * `struct vfio_device_feature_dma_buf` as the user passed it. `unreadable` marks user memory that
 * copy_from_user() faults on: the fixed header or the ranges array.
 */
export interface VfioDeviceFeatureDmaBuf {
  readonly regionIndex: number;
  readonly openFlags: number;
  readonly flags: number;
  readonly nrRanges: number;
  readonly dmaRanges: readonly VfioRegionDmaRange[];
  readonly unreadable?: 'header' | 'ranges';
}

/**
 * `vfio_check_feature()`: may the driver run this GET/SET?
 * @returns 1 to run it, 0 for a PROBE of a supported operation; EINVAL for an unsupported GET/SET, no
 *   GET or SET without PROBE, or argsz below `minsz`.
 */
export function vfioCheckFeature(
  flags: number,
  argsz: number,
  supportedOps: number,
  minsz = VFIO_DEVICE_FEATURE_DMA_BUF_SIZE,
): KResult<0 | 1> {
  const getSet = flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET);
  if ((getSet & ~supportedOps) !== 0) return err('EINVAL', 'operation not supported by the feature');
  if ((flags & VFIO_DEVICE_FEATURE_PROBE) !== 0) return ok(0);
  if (getSet === 0) return err('EINVAL', 'neither GET nor SET without PROBE');
  if (argsz < minsz) return err('EINVAL', `argsz ${argsz} < ${minsz}`);
  return ok(1);
}

const aligned = (v: bigint): boolean => (v & (PAGE_SIZE_N - 1n)) === 0n;

/**
 * The payload checks of vfio_pci_core_feature_dma_buf() up to validate_dmabuf_input(), in order.
 * @returns the total length; EFAULT (unreadable header), EINVAL (no ranges or flags != 0), ENODEV
 *   (region_index >= VFIO_PCI_ROM_REGION_INDEX), ENOMEM (ranges array too big to copy), EFAULT
 *   (unreadable ranges), EINVAL (zero or unaligned range, a size_t overflow of the total, bit 63 set).
 */
export function validateDmabufInput(arg: VfioDeviceFeatureDmaBuf): KResult<Bytes> {
  if (arg.unreadable === 'header') return err('EFAULT', 'copy_from_user of the feature payload');
  if (arg.nrRanges === 0 || arg.flags !== 0) return err('EINVAL', 'nr_ranges is 0 or flags is not 0');
  if (arg.regionIndex >= VFIO_PCI_ROM_REGION_INDEX)
    return err('ENODEV', `region ${arg.regionIndex} is not a BAR`);
  if (arg.nrRanges * VFIO_REGION_DMA_RANGE_SIZE > KMALLOC_MAX_SIZE)
    return err('ENOMEM', 'memdup_array_user: ranges array larger than KMALLOC_MAX_SIZE');
  if (arg.unreadable === 'ranges') return err('EFAULT', 'copy_from_user of the ranges');
  if (arg.dmaRanges.length !== arg.nrRanges)
    throw new Error('BUG: nr_ranges does not match the ranges given');
  let length = 0n;
  for (const r of arg.dmaRanges) {
    if (r.length === 0n || !aligned(r.offset) || !aligned(r.length))
      return err('EINVAL', 'a range of length 0 or not page aligned');
    length += r.length;
    if (length >= 1n << 64n) return err('EINVAL', 'total length overflows size_t');
  }
  // dma_iova_try_alloc() would WARN for sizes with the swiotlb flag bit set.
  if ((length & DMA_IOVA_USE_SWIOTLB) !== 0n) return err('EINVAL', 'total length has bit 63 set');
  return ok(bytes(length));
}
