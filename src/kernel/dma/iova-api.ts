// The consumer side of the IOVA-based DMA API (include/linux/dma-mapping.h, 6.16+):
// `dma_iova_try_alloc()`, `dma_iova_link()`, `dma_iova_sync()`, `dma_iova_unlink()`,
// `dma_iova_destroy()`, `dma_iova_free()`, `dma_use_iova()`, `dma_iova_size()`.
//
// The implementation is dma-iommu's (src/kernel/iommu/dma-iommu-iova.ts), reached through the
// `iova` capability of the device's ops: devices without it get `false` from try_alloc and must use
// the streaming API. mainline's dma-debug does not see IOVA links; the model records them in the
// ledger (type "phy", calls dma_iova_link / dma_iova_unlink) so that every mapping is accounted for.

import { type Bytes, bytes, type DmaAddr, dmaAddr, type PhysAddr } from '../../hw/addr.js';
import type { KResult } from '../errno.js';
import { debugDmaIovaLink, debugDmaIovaUnlink } from './debug-iova.js';
import type { DmaDevice } from './device.js';
import type { DmaDirection } from './dma-types.js';
import { DMA_IOVA_USE_SWIOTLB, type DmaIovaOps, type DmaIovaState } from './map-ops.js';
import { checkDir } from './mapping.js';

export { DMA_IOVA_USE_SWIOTLB, type DmaIovaState };

/** A zeroed `struct dma_iova_state`. */
export const newDmaIovaState = (): DmaIovaState => ({ addr: dmaAddr(0), size: 0n });

/** `dma_use_iova()`: did try_alloc succeed (size != 0)? */
export const dmaUseIova = (s: DmaIovaState): boolean => s.size !== 0n;

/** `dma_iova_size()`: the size asked for, without the swiotlb flag. */
export const dmaIovaSize = (s: DmaIovaState): Bytes => bytes(s.size & ~DMA_IOVA_USE_SWIOTLB);

function iovaOps(dev: DmaDevice, fn: string): DmaIovaOps {
  const o = dev.ops.iova;
  if (o === null) throw new Error(`BUG: ${fn} on ${dev.name}, whose DMA ops have no IOVA API`);
  return o;
}

/**
 * `dma_iova_try_alloc()`: zero `state`, then allocate IOVA for `size` bytes aligned like `phys`
 * (only its offset in the granule matters; page-aligned callers pass 0).
 * @returns true with `state` set; false when the device has no IOVA API (not behind dma-iommu), size
 *   is 0 or has bit 63 set (WARN), or the IOVA space is exhausted. False means: use dma_map_*.
 */
export function dmaIovaTryAlloc(dev: DmaDevice, state: DmaIovaState, phys: PhysAddr, size: Bytes): boolean {
  state.addr = dmaAddr(0);
  state.size = 0n;
  const o = dev.ops.iova;
  return o?.tryAlloc(dev, state, phys, size) === true;
}

/**
 * `dma_iova_link()`: map [phys, phys + size) at `state->addr + offset`, without an IOTLB sync.
 * Rules: only the first link may start inside a granule; each range but the last must end on one.
 * @returns ok; EIO (a later link starts mid-granule), EOPNOTSUPP (REQUIRE_COHERENT refused), EPERM
 *   (an untrusted device would have to bounce MMIO/REQUIRE_COHERENT/P2P memory), ENOMEM (bounce
 *   failed), or the IOMMU's map errno (EINVAL, EEXIST, ERANGE, ENOMEM).
 */
export function dmaIovaLink(
  dev: DmaDevice,
  state: DmaIovaState,
  phys: PhysAddr,
  offset: Bytes,
  size: Bytes,
  dir: DmaDirection,
  attrs = 0,
): KResult<void> {
  checkDir(dir);
  const r = iovaOps(dev, 'dma_iova_link').link(dev, state, phys, offset, size, dir, attrs);
  if (r.ok) debugDmaIovaLink(dev.ctx.debug, dev, phys, dmaAddr(state.addr + offset), size, dir, attrs);
  return r;
}

/**
 * `dma_iova_sync()`: make the links of [offset, offset + size) visible to the device.
 * @returns ok, or the IOMMU driver's sync error.
 */
export function dmaIovaSync(dev: DmaDevice, state: DmaIovaState, offset: Bytes, size: Bytes): KResult<void> {
  return iovaOps(dev, 'dma_iova_sync').sync(dev, state, offset, size);
}

/** `dma_iova_unlink()`: unmap [offset, offset + size) and sync the IOTLB; the IOVA stays allocated. */
export function dmaIovaUnlink(
  dev: DmaDevice,
  state: DmaIovaState,
  offset: Bytes,
  size: Bytes,
  dir: DmaDirection,
  attrs = 0,
): void {
  checkDir(dir);
  iovaOps(dev, 'dma_iova_unlink').unlink(dev, state, offset, size, dir, attrs, false);
  debugDmaIovaUnlink(dev.ctx.debug, dev, dmaAddr(state.addr + offset), size, 'dma_iova_unlink');
}

/** `dma_iova_free()`: free the whole IOVA range (every link must be unlinked first). */
export function dmaIovaFree(dev: DmaDevice, state: DmaIovaState): void {
  iovaOps(dev, 'dma_iova_free').free(dev, state);
}

/**
 * `dma_iova_destroy()`: unlink [0, mappedLen) and free the IOVA (queued for the flush on a lazy
 * domain); with mappedLen 0 just free. Precondition: [0, mappedLen) is the only linked part.
 */
export function dmaIovaDestroy(
  dev: DmaDevice,
  state: DmaIovaState,
  mappedLen: Bytes,
  dir: DmaDirection,
  attrs = 0,
): void {
  const o = iovaOps(dev, 'dma_iova_destroy');
  if (mappedLen !== 0n) {
    checkDir(dir);
    o.unlink(dev, state, bytes(0), mappedLen, dir, attrs, true);
    debugDmaIovaUnlink(dev.ctx.debug, dev, state.addr, mappedLen, 'dma_iova_destroy');
  } else o.free(dev, state);
}

/** The DMA address of byte `offset` of a linked state. */
export const dmaIovaAddr = (state: DmaIovaState, offset: bigint): DmaAddr => dmaAddr(state.addr + offset);
