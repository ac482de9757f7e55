// The DMA-mapping implementer API: what a mapping implementation (dma-direct, dma-iommu) provides.
//
// Mirrors include/linux/dma-map-ops.h (`struct dma_map_ops`, newest with `map_phys`/`unmap_phys`).
// The consumer API (mapping.ts, mapping-sg.ts) checks its arguments, dispatches to these ops and
// records the call in the debug ledger; it never asks which implementation it holds. Where mainline
// calls dma-direct and dma-iommu directly (`dma_map_direct()`, `use_dma_iommu()`), the model gives
// both an ops table, and each declares its own answers (`unmapOptional`, `iova`, `pciP2pdmaSupported`)
// instead of the core testing which one it is:
//
//   driver --dma_map_phys()--> mapping.ts: check dir/mask/attrs --> dev.ops.mapPhys() --> debug ledger
//                                                                   |-- directDmaOps  (direct.ts)
//                                                                   `-- iommuDmaOps   (dma-iommu.ts)

import type { Bytes, DmaAddr, PhysAddr } from '../../hw/addr.js';
import type { KResult } from '../errno.js';
import type { Scatterlist } from '../lib/scatterlist.js';
import type { DmaDevice } from './device.js';
import type { DmaDirection } from './dma-types.js';

/** `SIZE_MAX` of a 64-bit kernel: "no limit" for mapping sizes. */
export const SIZE_MAX = (1n << 64n) - 1n;

/** `DMA_IOVA_USE_SWIOTLB`: the top bit of `dma_iova_state.__size`, set when a link bounced. */
export const DMA_IOVA_USE_SWIOTLB = 1n << 63n;

/** `struct dma_iova_state`: the IOVA range of a two-step mapping. */
export interface DmaIovaState {
  /** `addr`: the DMA address of byte 0 (IOVA base plus the granule offset of `phys`). */
  addr: DmaAddr;
  /** `__size`: the size asked for, with DMA_IOVA_USE_SWIOTLB in bit 63; 0 when unused. */
  size: bigint;
}

/**
 * The two-step IOVA API of an implementation that can offer it (dma-iommu). Declared as a
 * capability: `dma_iova_try_alloc()` returns false for ops without it. The consumer functions
 * (iova-api.ts) dispatch here; the kernel's argument checks live in the implementation because
 * they depend on its granule.
 */
export interface DmaIovaOps {
  /** `dma_iova_try_alloc()` after the state was zeroed: true with the state filled in. */
  tryAlloc(dev: DmaDevice, state: DmaIovaState, phys: PhysAddr, size: Bytes): boolean;
  /** `dma_iova_free()`. */
  free(dev: DmaDevice, state: DmaIovaState): void;
  /** `dma_iova_link()`: EIO, EOPNOTSUPP, EPERM, ENOMEM or the IOMMU's map errno. */
  link(
    dev: DmaDevice,
    state: DmaIovaState,
    phys: PhysAddr,
    offset: Bytes,
    size: Bytes,
    dir: DmaDirection,
    attrs: number,
  ): KResult<void>;
  /** `dma_iova_sync()`. */
  sync(dev: DmaDevice, state: DmaIovaState, offset: Bytes, size: Bytes): KResult<void>;
  /** `dma_iova_unlink()`, or with `freeIova` the unlink half of `dma_iova_destroy()`. */
  unlink(
    dev: DmaDevice,
    state: DmaIovaState,
    offset: Bytes,
    size: Bytes,
    dir: DmaDirection,
    attrs: number,
    freeIova: boolean,
  ): void;
  /** `dma_get_merge_boundary()` + 1: the granule every link but the first must start on. */
  granule(dev: DmaDevice): number;
}

/** `struct dma_map_ops` as the model needs it. Every op is given the device's DMA state. */
export interface DmaMapOps {
  /** Name for reports ("dma-direct", "dma-iommu"). */
  readonly name: string;
  /**
   * `dma_need_unmap()` may answer false for devices that need no sync: the DMA address is a pure
   * function of the physical address (dma-direct). False for implementations that hold resources.
   */
  readonly unmapOptional: boolean;
  /** `dma_pci_p2pdma_supported()`: the implementation handles P2PDMA pages in scatterlists. */
  readonly pciP2pdmaSupported: boolean;
  /** The IOVA-based API, when the implementation has one. */
  readonly iova: DmaIovaOps | null;
  /** `map_phys`: a DMA address for [phys, phys + size), or DMA_MAPPING_ERROR. */
  mapPhys(dev: DmaDevice, phys: PhysAddr, size: Bytes, dir: DmaDirection, attrs: number): DmaAddr;
  /** `unmap_phys`. */
  unmapPhys(dev: DmaDevice, addr: DmaAddr, size: Bytes, dir: DmaDirection, attrs: number): void;
  /**
   * `map_sg`: map `nents` entries from `sgl`.
   * @returns the number of DMA segments written (may be fewer than nents), or EINVAL, ENOMEM, EIO,
   *   EREMOTEIO (the errnos `__dma_map_sg_attrs()` passes through).
   */
  mapSg(dev: DmaDevice, sgl: Scatterlist, nents: number, dir: DmaDirection, attrs: number): KResult<number>;
  /** `unmap_sg`: undo `mapSg` of the same `nents` (the original count, not the mapped one). */
  unmapSg(dev: DmaDevice, sgl: Scatterlist, nents: number, dir: DmaDirection, attrs: number): void;
  syncSingleForCpu(dev: DmaDevice, addr: DmaAddr, size: Bytes, dir: DmaDirection): void;
  syncSingleForDevice(dev: DmaDevice, addr: DmaAddr, size: Bytes, dir: DmaDirection): void;
  syncSgForCpu(dev: DmaDevice, sgl: Scatterlist, nents: number, dir: DmaDirection): void;
  syncSgForDevice(dev: DmaDevice, sgl: Scatterlist, nents: number, dir: DmaDirection): void;
  /** `dma_supported`: can the implementation honour this DMA mask for the device? */
  dmaSupported(dev: DmaDevice, mask: bigint): boolean;
  /** `get_required_mask`: the smallest mask that reaches all of memory without bouncing. */
  getRequiredMask(dev: DmaDevice): bigint;
  /** `max_mapping_size` (SIZE_MAX when unlimited). */
  maxMappingSize(dev: DmaDevice): bigint;
  /** `opt_mapping_size` (SIZE_MAX when the implementation has no preference). */
  optMappingSize(dev: DmaDevice): bigint;
  /** `get_merge_boundary`: 0 means segments cannot be merged. */
  getMergeBoundary(dev: DmaDevice): bigint;
  /** Part of `dma_addressing_limited()`: holes in the device's view of RAM (dma-direct's range map). */
  rangeMapLimited(dev: DmaDevice): boolean;
  /** `__dma_need_sync()` for one address. */
  needSync(dev: DmaDevice, addr: DmaAddr): boolean;
  /** Does this implementation (as set up for `dev`) start with `dma_skip_sync` true? */
  initialSkipSync(dev: DmaDevice): boolean;
}
