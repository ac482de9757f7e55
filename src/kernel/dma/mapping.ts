// The DMA-mapping consumer API for single ranges, masks and queries (kernel/dma/mapping.c,
// include/linux/dma-mapping.h): `dma_map_phys()`, `dma_map_page_attrs()`, `dma_map_resource()`, their
// unmaps, `dma_mapping_error()`, `dma_sync_single_*()`, `dma_set_mask()` and friends.
//
// Each entry point checks its arguments, dispatches to the device's ops, and records the call in the
// debug ledger. As in C, a failed single mapping is the value DMA_MAPPING_ERROR: a driver must ask
// `dmaMappingError()`, and one that forgets is reported by the ledger at unmap ("failed to check map
// error"). Scatterlists are in mapping-sg.ts; the IOVA two-step API in iova-api.ts.

import { type Bytes, type DmaAddr, PAGE_SHIFT, type PhysAddr, physAddr } from '../../hw/addr.js';
import { err, type KResult, ok } from '../errno.js';
import { isDirectMapAddr, type KVirtAddr, virtToPhys } from '../mm/direct-map.js';
import { DEBUG_PHYS_TYPE, type DmaDebugCall, type DmaDebugType } from './debug.js';
import { debugDmaMapPhys, debugDmaMappingError, debugDmaUnmapPhys } from './debug-checks.js';
import { debugDmaDeviceRelease, debugDmaSyncSingle } from './debug-sync.js';
import { type DmaDevice, dmaGetMask, minNotZero } from './device.js';
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_MAPPING_ERROR,
  type DmaDirection,
  validDmaDirection,
} from './dma-types.js';
import { warnOnceDev } from './swiotlb-map.js';

/** `BUG_ON(!valid_dma_direction(dir))`. */
export function checkDir(dir: DmaDirection): void {
  if (!validDmaDirection(dir)) throw new Error(`BUG: invalid DMA direction ${dir}`);
}

/** The shared body of the map calls: mask check, coherence check, dispatch, record. */
function mapPhysAs(
  dev: DmaDevice,
  phys: PhysAddr,
  size: Bytes,
  dir: DmaDirection,
  attrs: number,
  type: DmaDebugType,
  call: DmaDebugCall,
): DmaAddr {
  checkDir(dir);
  if (dev.dmaMask === null) {
    warnOnceDev(dev, 'no-dma-mask', `WARNING: ${call}: WARN_ON_ONCE(!dev->dma_mask)`);
    return DMA_MAPPING_ERROR;
  }
  if (dev.ctx.version !== '6.1' && !dev.coherent && (attrs & DMA_ATTR_REQUIRE_COHERENT) !== 0)
    return DMA_MAPPING_ERROR;
  const addr = dev.ops.mapPhys(dev, phys, size, dir, attrs);
  debugDmaMapPhys(dev.ctx.debug, dev, phys, size, dir, addr, attrs, type, call);
  return addr;
}

/**
 * `dma_map_phys()` (6.18+): map [phys, phys + size) for DMA in `dir`.
 * @returns the DMA address, or DMA_MAPPING_ERROR (check with `dmaMappingError()`): no DMA mask,
 *   REQUIRE_COHERENT on a non-coherent device, or whatever the implementation refused.
 *   An invalid direction is a kernel BUG (throws).
 */
export function dmaMapPhys(
  dev: DmaDevice,
  phys: PhysAddr,
  size: Bytes,
  dir: DmaDirection,
  attrs = 0,
): DmaAddr {
  return mapPhysAs(dev, phys, size, dir, attrs, DEBUG_PHYS_TYPE[dev.ctx.version].page, 'dma_map_phys');
}

/**
 * `dma_map_page_attrs()`: map `size` bytes at `offset` into page `pfn`.
 * @returns as `dmaMapPhys`; also DMA_MAPPING_ERROR for DMA_ATTR_MMIO, and (newest, with the debug
 *   ledger on) for ZONE_DEVICE pages such as P2PDMA memory (WARN_ON_ONCE).
 */
export function dmaMapPageAttrs(
  dev: DmaDevice,
  pfn: number,
  offset: number,
  size: Bytes,
  dir: DmaDirection,
  attrs = 0,
): DmaAddr {
  const newest = dev.ctx.version !== '6.1';
  if (newest && (attrs & DMA_ATTR_MMIO) !== 0) return DMA_MAPPING_ERROR;
  if (newest && dev.ctx.debug.enabled && dev.ctx.p2p.providerOfPfn(pfn) !== null) {
    warnOnceDev(
      dev,
      'zone-device-page',
      'WARNING: dma_map_page_attrs: WARN_ON_ONCE(is_zone_device_page(page))',
    );
    return DMA_MAPPING_ERROR;
  }
  const phys = physAddr((BigInt(pfn) << BigInt(PAGE_SHIFT)) + BigInt(offset));
  return mapPhysAs(dev, phys, size, dir, attrs, DEBUG_PHYS_TYPE[dev.ctx.version].page, 'dma_map_page_attrs');
}

/** `dma_map_page()`: `dma_map_page_attrs()` without attributes. */
export const dmaMapPage = (
  dev: DmaDevice,
  pfn: number,
  offset: number,
  size: Bytes,
  dir: DmaDirection,
): DmaAddr => dmaMapPageAttrs(dev, pfn, offset, size, dir, 0);

/**
 * `dma_map_single_attrs()`: map `size` bytes at kernel virtual address `ptr` (a direct-map address).
 * @returns as `dmaMapPageAttrs`; DMA_MAPPING_ERROR with a WARN for an address outside the direct map
 *   ("rejecting DMA map of vmalloc memory").
 */
export function dmaMapSingleAttrs(
  dev: DmaDevice,
  ptr: KVirtAddr,
  size: Bytes,
  dir: DmaDirection,
  attrs = 0,
): DmaAddr {
  if (!isDirectMapAddr(ptr)) {
    warnOnceDev(dev, 'vmalloc', 'rejecting DMA map of vmalloc memory');
    return DMA_MAPPING_ERROR;
  }
  const phys = virtToPhys(ptr);
  return dmaMapPageAttrs(dev, Number(phys >> BigInt(PAGE_SHIFT)), Number(phys & 0xfffn), size, dir, attrs);
}

/**
 * `dma_map_resource()`: map MMIO (a BAR, a doorbell) for DMA; `dma_map_phys(..., DMA_ATTR_MMIO)`.
 * @returns as `dmaMapPhys`. 6.1 refuses RAM (WARN_ON_ONCE(pfn_valid)); newest maps it and the debug
 *   ledger reports "dma_map_resource called for RAM address" (the May 2026 fix).
 */
export function dmaMapResource(
  dev: DmaDevice,
  phys: PhysAddr,
  size: Bytes,
  dir: DmaDirection,
  attrs = 0,
): DmaAddr {
  if (dev.ctx.version === '6.1' && dev.ctx.isRam(phys)) {
    warnOnceDev(
      dev,
      'resource-ram',
      'WARNING: dma_map_resource: WARN_ON_ONCE(pfn_valid(PHYS_PFN(phys_addr)))',
    );
    return DMA_MAPPING_ERROR;
  }
  return mapPhysAs(
    dev,
    phys,
    size,
    dir,
    attrs | DMA_ATTR_MMIO,
    DEBUG_PHYS_TYPE[dev.ctx.version].resource,
    'dma_map_resource',
  );
}

function unmapPhysAs(
  dev: DmaDevice,
  addr: DmaAddr,
  size: Bytes,
  dir: DmaDirection,
  attrs: number,
  type: DmaDebugType,
  call: DmaDebugCall,
): void {
  checkDir(dir);
  dev.ops.unmapPhys(dev, addr, size, dir, attrs);
  debugDmaUnmapPhys(dev.ctx.debug, dev, addr, size, dir, type, call);
}

/** `dma_unmap_phys()`: undo `dmaMapPhys` with the same size, direction and attributes. */
export function dmaUnmapPhys(dev: DmaDevice, addr: DmaAddr, size: Bytes, dir: DmaDirection, attrs = 0): void {
  unmapPhysAs(dev, addr, size, dir, attrs, DEBUG_PHYS_TYPE[dev.ctx.version].page, 'dma_unmap_phys');
}

/** `dma_unmap_page_attrs()`: MMIO attributes are ignored (nothing was mapped). */
export function dmaUnmapPageAttrs(
  dev: DmaDevice,
  addr: DmaAddr,
  size: Bytes,
  dir: DmaDirection,
  attrs = 0,
): void {
  if (dev.ctx.version !== '6.1' && (attrs & DMA_ATTR_MMIO) !== 0) return;
  unmapPhysAs(dev, addr, size, dir, attrs, DEBUG_PHYS_TYPE[dev.ctx.version].page, 'dma_unmap_page_attrs');
}

/** `dma_unmap_page()` / `dma_unmap_single()`: `dma_unmap_page_attrs()` without attributes. */
export const dmaUnmapPage = (dev: DmaDevice, addr: DmaAddr, size: Bytes, dir: DmaDirection): void =>
  dmaUnmapPageAttrs(dev, addr, size, dir, 0);
export const dmaUnmapSingle = dmaUnmapPage;

/** `dma_unmap_resource()`. */
export function dmaUnmapResource(
  dev: DmaDevice,
  addr: DmaAddr,
  size: Bytes,
  dir: DmaDirection,
  attrs = 0,
): void {
  unmapPhysAs(
    dev,
    addr,
    size,
    dir,
    attrs | DMA_ATTR_MMIO,
    DEBUG_PHYS_TYPE[dev.ctx.version].resource,
    'dma_unmap_resource',
  );
}

/**
 * `dma_mapping_error()`: tell the ledger the driver checked `addr`.
 * @returns ok, or ENOMEM when `addr` is DMA_MAPPING_ERROR.
 */
export function dmaMappingError(dev: DmaDevice, addr: DmaAddr): KResult<void> {
  debugDmaMappingError(dev.ctx.debug, dev, addr);
  return addr === DMA_MAPPING_ERROR ? err('ENOMEM', 'DMA_MAPPING_ERROR') : ok(undefined);
}

/**
 * A driver unbinds from the device (`BUS_NOTIFY_UNBOUND_DRIVER`): the debug ledger reports mappings
 * still held ("device driver has pending DMA allocations while released from device").
 * @returns how many mappings leaked (0 with the ledger off).
 */
export const dmaDriverRelease = (dev: DmaDevice): number => debugDmaDeviceRelease(dev.ctx.debug, dev);

/** `dma_dev_need_sync()`: skip syncs on devices that never need them, unless the ledger watches. */
export const dmaDevNeedSync = (dev: DmaDevice): boolean => !dev.dmaSkipSync || dev.ctx.debug.enabled;

/** `dma_sync_single_for_cpu()`: hand a mapped range back to the CPU. */
export function dmaSyncSingleForCpu(dev: DmaDevice, addr: DmaAddr, size: Bytes, dir: DmaDirection): void {
  if (!dmaDevNeedSync(dev)) return;
  checkDir(dir);
  dev.ops.syncSingleForCpu(dev, addr, size, dir);
  debugDmaSyncSingle(dev.ctx.debug, dev, addr, size, dir, true);
}

/** `dma_sync_single_for_device()`: hand a mapped range (back) to the device. */
export function dmaSyncSingleForDevice(dev: DmaDevice, addr: DmaAddr, size: Bytes, dir: DmaDirection): void {
  if (!dmaDevNeedSync(dev)) return;
  checkDir(dir);
  dev.ops.syncSingleForDevice(dev, addr, size, dir);
  debugDmaSyncSingle(dev.ctx.debug, dev, addr, size, dir, false);
}

/** `dma_need_sync()`: does this mapping need sync calls? */
export const dmaNeedSync = (dev: DmaDevice, addr: DmaAddr): boolean =>
  dmaDevNeedSync(dev) && dev.ops.needSync(dev, addr);

/**
 * `dma_set_mask()`: the streaming mask (truncated to 64 bits).
 * @returns ok; EIO when the device has no mask storage or the implementation cannot honour it.
 */
export function dmaSetMask(dev: DmaDevice, mask: bigint): KResult<void> {
  const m = BigInt.asUintN(64, mask);
  if (dev.dmaMask === null || !dev.ops.dmaSupported(dev, m))
    return err('EIO', `mask ${m.toString(16)} not supported`);
  dev.dmaMask = m;
  dev.dmaSkipSync = dev.ops.initialSkipSync(dev);
  return ok(undefined);
}

/** `dma_set_coherent_mask()`. @returns ok; EIO when the implementation cannot honour the mask. */
export function dmaSetCoherentMask(dev: DmaDevice, mask: bigint): KResult<void> {
  const m = BigInt.asUintN(64, mask);
  if (!dev.ops.dmaSupported(dev, m)) return err('EIO', `coherent mask ${m.toString(16)} not supported`);
  dev.coherentDmaMask = m;
  return ok(undefined);
}

/** `dma_set_mask_and_coherent()`. @returns ok or EIO (the streaming mask is set first). */
export function dmaSetMaskAndCoherent(dev: DmaDevice, mask: bigint): KResult<void> {
  const r = dmaSetMask(dev, mask);
  return r.ok ? dmaSetCoherentMask(dev, mask) : r;
}

/** `dma_get_required_mask()`. */
export const dmaGetRequiredMask = (dev: DmaDevice): bigint => dev.ops.getRequiredMask(dev);
/** `dma_max_mapping_size()`. */
export const dmaMaxMappingSize = (dev: DmaDevice): bigint => dev.ops.maxMappingSize(dev);
/** `dma_opt_mapping_size()`: the implementation's preference, capped by the maximum. */
export function dmaOptMappingSize(dev: DmaDevice): bigint {
  const max = dmaMaxMappingSize(dev);
  const opt = dev.ops.optMappingSize(dev);
  if (opt < max) return opt;
  return max;
}
/** `dma_get_merge_boundary()`: 0 when segments cannot be merged. */
export const dmaGetMergeBoundary = (dev: DmaDevice): bigint => dev.ops.getMergeBoundary(dev);
/** `dma_pci_p2pdma_supported()`. */
export const dmaPciP2pdmaSupported = (dev: DmaDevice): boolean => dev.ops.pciP2pdmaSupported;
/** `dma_need_unmap()`: false only for stateless mappings of sync-free devices without the ledger. */
export const dmaNeedUnmap = (dev: DmaDevice): boolean =>
  !dev.ops.unmapOptional || !dev.dmaSkipSync || dev.ctx.debug.enabled;

/** `dma_addressing_limited()`: the mask or the range map cannot reach all of RAM. */
export function dmaAddressingLimited(dev: DmaDevice): boolean {
  if (minNotZero(dmaGetMask(dev), dev.busDmaLimit) < dmaGetRequiredMask(dev)) return true;
  return dev.ops.rangeMapLimited(dev);
}
