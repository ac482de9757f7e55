// The DMA-mapping consumer API for scatterlists (kernel/dma/mapping.c): `dma_map_sg_attrs()`,
// `dma_map_sgtable()`, their unmaps and the sg sync calls.
//
// `__dma_map_sg_attrs()` lets only four errnos through: EINVAL, ENOMEM, EIO and EREMOTEIO. Any other
// result (including 0 segments) WARNs once and becomes EIO. The legacy `dma_map_sg_attrs()` turns every
// error into 0; `dma_map_sgtable()` returns the errno and sets `nents`. Unmap always takes the
// original entry count (`orig_nents`), never the mapped one.

import { type Errno, err, type KResult, ok } from '../errno.js';
import type { Scatterlist, SgTable } from '../lib/scatterlist.js';
import type { DmaDebugCall } from './debug.js';
import { debugDmaMapSg, debugDmaUnmapSg } from './debug-checks.js';
import { debugDmaSyncSg } from './debug-sync.js';
import type { DmaDevice } from './device.js';
import { DMA_ATTR_REQUIRE_COHERENT, type DmaDirection } from './dma-types.js';
import { checkDir, dmaDevNeedSync } from './mapping.js';
import { warnOnceDev } from './swiotlb-map.js';

/** The errnos `__dma_map_sg_attrs()` passes through. */
export const DMA_MAP_SG_ERRNOS: readonly Errno[] = ['EINVAL', 'ENOMEM', 'EIO', 'EREMOTEIO'];

/**
 * `__dma_map_sg_attrs()`.
 * @returns mapped segment count (> 0); EINVAL, ENOMEM, EIO, EREMOTEIO from the implementation;
 *   newest: EOPNOTSUPP for REQUIRE_COHERENT on a non-coherent device; EIO (after a WARN) for any
 *   other implementation result, including 0 segments. Without a DMA mask: ok(0) after a WARN.
 */
function dmaMapSgInner(
  dev: DmaDevice,
  sgl: Scatterlist | null,
  nents: number,
  dir: DmaDirection,
  attrs: number,
  call: DmaDebugCall,
): KResult<number> {
  checkDir(dir);
  if (dev.ctx.version !== '6.1' && !dev.coherent && (attrs & DMA_ATTR_REQUIRE_COHERENT) !== 0)
    return err('EOPNOTSUPP', 'REQUIRE_COHERENT on a non-coherent device');
  if (dev.dmaMask === null) {
    warnOnceDev(dev, 'no-dma-mask', `WARNING: ${call}: WARN_ON_ONCE(!dev->dma_mask)`);
    return ok(0);
  }
  const r: KResult<number> = sgl === null || nents <= 0 ? ok(0) : dev.ops.mapSg(dev, sgl, nents, dir, attrs);
  if (r.ok && r.value > 0) {
    debugDmaMapSg(dev.ctx.debug, dev, sgl!, nents, r.value, dir, attrs, call);
    return r;
  }
  if (!r.ok && DMA_MAP_SG_ERRNOS.includes(r.errno)) return r;
  warnOnceDev(dev, 'map-sg-errno', `WARNING: ${call}: unexpected result ${r.ok ? r.value : `-${r.errno}`}`);
  return err('EIO', r.ok ? `${r.value} segments mapped` : `${r.errno} from the implementation`);
}

/**
 * `dma_map_sg_attrs()`: map `nents` entries.
 * @returns the number of DMA segments (may be fewer than nents), 0 on any error (legacy).
 */
export function dmaMapSgAttrs(
  dev: DmaDevice,
  sgl: Scatterlist | null,
  nents: number,
  dir: DmaDirection,
  attrs = 0,
): number {
  const r = dmaMapSgInner(dev, sgl, nents, dir, attrs, 'dma_map_sg_attrs');
  return r.ok ? r.value : 0;
}

/**
 * `dma_map_sgtable()`: map `sgt->orig_nents` entries and set `sgt->nents` to the segment count.
 * @returns ok; EINVAL (bad argument, unaligned, usage error; will not succeed on retry), ENOMEM (out of
 *   resources such as IOVA space; retry later), EIO (legacy/unknown, e.g. DMA_MAPPING_ERROR below),
 *   EREMOTEIO (the device cannot reach P2PDMA memory in the table; will not succeed on retry);
 *   newest also EOPNOTSUPP (REQUIRE_COHERENT on a non-coherent device). `nents` is unchanged on error.
 */
export function dmaMapSgtable(dev: DmaDevice, sgt: SgTable, dir: DmaDirection, attrs = 0): KResult<void> {
  const r = dmaMapSgInner(dev, sgt.sgl, sgt.origNents, dir, attrs, 'dma_map_sgtable');
  if (!r.ok) return r;
  sgt.nents = r.value;
  return ok(undefined);
}

function unmapSg(
  dev: DmaDevice,
  sgl: Scatterlist | null,
  nents: number,
  dir: DmaDirection,
  attrs: number,
  call: DmaDebugCall,
): void {
  checkDir(dir);
  if (sgl === null) return;
  debugDmaUnmapSg(dev.ctx.debug, dev, sgl, nents, dir, call);
  dev.ops.unmapSg(dev, sgl, nents, dir, attrs);
}

/** `dma_unmap_sg_attrs()`: `nents` must be the count given to the map call, not its result. */
export function dmaUnmapSgAttrs(
  dev: DmaDevice,
  sgl: Scatterlist | null,
  nents: number,
  dir: DmaDirection,
  attrs = 0,
): void {
  unmapSg(dev, sgl, nents, dir, attrs, 'dma_unmap_sg_attrs');
}

/** `dma_unmap_sgtable()`: unmap `orig_nents` entries. */
export function dmaUnmapSgtable(dev: DmaDevice, sgt: SgTable, dir: DmaDirection, attrs = 0): void {
  unmapSg(dev, sgt.sgl, sgt.origNents, dir, attrs, 'dma_unmap_sgtable');
}

/** `dma_sync_sg_for_cpu()`. */
export function dmaSyncSgForCpu(
  dev: DmaDevice,
  sgl: Scatterlist | null,
  nelems: number,
  dir: DmaDirection,
): void {
  if (!dmaDevNeedSync(dev) || sgl === null) return;
  checkDir(dir);
  dev.ops.syncSgForCpu(dev, sgl, nelems, dir);
  debugDmaSyncSg(dev.ctx.debug, dev, sgl, nelems, dir, true);
}

/** `dma_sync_sg_for_device()`. */
export function dmaSyncSgForDevice(
  dev: DmaDevice,
  sgl: Scatterlist | null,
  nelems: number,
  dir: DmaDirection,
): void {
  if (!dmaDevNeedSync(dev) || sgl === null) return;
  checkDir(dir);
  dev.ops.syncSgForDevice(dev, sgl, nelems, dir);
  debugDmaSyncSg(dev.ctx.debug, dev, sgl, nelems, dir, false);
}

/** `dma_sync_sgtable_for_cpu()`: over `orig_nents`. */
export const dmaSyncSgtableForCpu = (dev: DmaDevice, sgt: SgTable, dir: DmaDirection): void =>
  dmaSyncSgForCpu(dev, sgt.sgl, sgt.origNents, dir);

/** `dma_sync_sgtable_for_device()`: over `orig_nents`. */
export const dmaSyncSgtableForDevice = (dev: DmaDevice, sgt: SgTable, dir: DmaDirection): void =>
  dmaSyncSgForDevice(dev, sgt.sgl, sgt.origNents, dir);
