// RDMA memory regions backed by a dma-buf (drivers/infiniband/core/umem_dmabuf.c, newest with the
// revoke support of 2025-26): the umem attaches dynamically with the driver's importer ops; a dynamic
// MR maps on demand (and again after every invalidation), a pinned MR pins and maps once.
//
//   ib_umem_dmabuf_get:        checks, dma_buf_get, dma_buf_dynamic_attach(ibdev->dma_device, ops, umem)
//   ib_umem_dmabuf_map_pages:  resv held; revoked -> EINVAL; map the attachment (BIDIRECTIONAL) unless
//                              mapped; trim to the MR's range; then wait for KERNEL fences (a move's
//                              copy) so the pages hold the data before the device uses them
//   ib_umem_dmabuf_unmap_pages: resv held; unmap if mapped
//   get_pinned:                pinned ops (≤6.19: a move_notify that only warns; 7.0: no invalidate op,
//                              so the importer is not revocable), dma_buf_pin, map_pages
//
// The kernel trims the mapped sg_table in place (first_sg_offset, last_sg_trim) and restores it before
// unmapping; the model keeps the trimmed view as a separate segment list and leaves the table intact.

import { type DmaAddr, dmaAddr, PAGE_SIZE_N } from '../../../hw/addr.js';
import type { DmaDevice } from '../../dma/device.js';
import {
  type DmaBuf,
  type DmaBufAttachment,
  type DmaBufAttachOps,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufPin,
  dmaBufPut,
  dmaBufUnpin,
  getDmaBuf,
} from '../../dma-buf/dma-buf.js';
import { dmaBufMapAttachment, dmaBufUnmapAttachment } from '../../dma-buf/dma-buf-map.js';
import { dmaResvAssertHeld, dmaResvLock, dmaResvUnlock } from '../../dma-buf/dma-resv.js';
import { dmaResvWaitTimeout } from '../../dma-buf/dma-resv-iter.js';
import { type KTaskOp, MAX_SCHEDULE_TIMEOUT } from '../../dma-buf/sched.js';
import { err, type KResult, ok } from '../../errno.js';
import { forEachSgtableDmaSg, type SgTable } from '../../lib/scatterlist.js';

/** An RDMA device as the umem code sees it: a name and the device doing its DMA. */
export interface IbDevice {
  readonly name: string;
  readonly dmaDevice: DmaDevice;
  /** ibdev_warn_ratelimited() lines. */
  readonly log: string[];
}

/** One DMA segment of the MR's range (the trimmed sg_table). */
export interface UmemSegment {
  readonly addr: DmaAddr;
  readonly len: number;
}

/** `struct ib_umem_dmabuf`. */
export interface IbUmemDmabuf {
  readonly ibdev: IbDevice;
  /** `umem.address`: byte offset of the MR in the dma-buf; `umem.length`. */
  readonly address: bigint;
  readonly length: bigint;
  readonly writable: boolean;
  attach: DmaBufAttachment;
  sgt: SgTable | null;
  /** The mapped range, trimmed to [ALIGN_DOWN(address), ALIGN(address + length)). */
  segments: UmemSegment[];
  pinned: boolean;
  revoked: boolean;
  /** The driver's MR (`umem_dmabuf->private`). */
  priv: unknown;
}

const U64 = 1n << 64n;

/** The trimmed DMA view of a mapped table (what first_sg/last_sg describe in the kernel). */
function trim(sgt: SgTable, address: bigint, length: bigint): UmemSegment[] {
  const start = address & ~(PAGE_SIZE_N - 1n);
  const end = (address + length + PAGE_SIZE_N - 1n) & ~(PAGE_SIZE_N - 1n);
  const out: UmemSegment[] = [];
  let cur = 0n;
  for (const sg of forEachSgtableDmaSg(sgt)) {
    const len = BigInt(sg.dmaLength);
    const lo = start > cur ? start : cur;
    const hi = end < cur + len ? end : cur + len;
    if (lo < hi) out.push({ addr: dmaAddr(sg.dmaAddress + (lo - cur)), len: Number(hi - lo) });
    cur += len;
    if (cur >= end) break;
  }
  return out;
}

/**
 * `ib_umem_dmabuf_get()`: a umem over [offset, offset + size) of `dmabuf`, attached with `ops`.
 * @returns the umem; EINVAL (offset + size overflows, ≤6.19 ops without move_notify, range beyond the
 *   dma-buf, no page); the attach error. May sleep.
 */
export function* ibUmemDmabufGet(
  ibdev: IbDevice,
  dmabuf: DmaBuf,
  offset: bigint,
  size: bigint,
  writable: boolean,
  ops: DmaBufAttachOps,
): KTaskOp<KResult<IbUmemDmabuf>> {
  const end = offset + size;
  if (end >= U64) return err('EINVAL', 'offset + size overflows');
  if (dmabuf.world.facts.dmabufInvalidateOp === 'move_notify' && !ops.move_notify)
    return err('EINVAL', 'importer ops without move_notify');
  if (BigInt(dmabuf.sizeBytes) < end) return err('EINVAL', 'range beyond the dma-buf');
  const pages = ((end + PAGE_SIZE_N - 1n) & ~(PAGE_SIZE_N - 1n)) - (offset & ~(PAGE_SIZE_N - 1n));
  if (pages === 0n) return err('EINVAL', 'empty range');
  getDmaBuf(dmabuf);
  const umem = {
    ibdev,
    address: offset,
    length: size,
    writable,
    sgt: null,
    segments: [],
    pinned: false,
    revoked: false,
    priv: null,
  } as unknown as IbUmemDmabuf;
  const a = yield* dmaBufDynamicAttach(dmabuf, ibdev.dmaDevice, ops, umem);
  if (!a.ok) {
    dmaBufPut(dmabuf);
    return a;
  }
  umem.attach = a.value;
  return ok(umem);
}

/**
 * `ib_umem_dmabuf_map_pages()`: map (if not mapped), then wait for the exporter's KERNEL fences.
 * Resv lock held. @returns ok; EINVAL when revoked; the map error; ETIMEDOUT/ERESTARTSYS from the wait.
 * May sleep.
 */
export function* ibUmemDmabufMapPages(umem: IbUmemDmabuf): KTaskOp<KResult<void>> {
  const resv = umem.attach.dmabuf.resv;
  dmaResvAssertHeld(resv, 'ib_umem_dmabuf_map_pages');
  if (umem.revoked) return err('EINVAL', 'umem revoked');
  if (umem.sgt === null) {
    const sgt = yield* dmaBufMapAttachment(umem.attach, 'bidirectional');
    if (!sgt.ok) return sgt;
    umem.sgt = sgt.value;
    umem.segments = trim(sgt.value, umem.address, umem.length);
  }
  // The table is valid now, but a move may still be copying the data: wait for it.
  const w = yield* dmaResvWaitTimeout(resv, 'kernel', false, MAX_SCHEDULE_TIMEOUT);
  if (!w.ok) return w;
  return ok(undefined);
}

/** `ib_umem_dmabuf_unmap_pages()`. Resv lock held. */
export function ibUmemDmabufUnmapPages(umem: IbUmemDmabuf): void {
  dmaResvAssertHeld(umem.attach.dmabuf.resv, 'ib_umem_dmabuf_unmap_pages');
  if (umem.sgt === null) return;
  dmaBufUnmapAttachment(umem.attach, umem.sgt, 'bidirectional');
  umem.sgt = null;
  umem.segments = [];
}

/** The ≤6.19 pinned importer's move_notify: it cannot react, it only complains. */
function unsupportedMoveNotify(attach: DmaBufAttachment): void {
  const umem = attach.importerPriv as IbUmemDmabuf;
  umem.ibdev.log.push(`${umem.ibdev.name}: Invalidate callback should not be called when memory is pinned`);
}

/** `ib_umem_dmabuf_attach_pinned_ops`: ≤6.19 with the warning move_notify, 7.0 without an invalidate op. */
export const pinnedOps = (op: 'move_notify' | 'invalidate_mappings'): DmaBufAttachOps =>
  op === 'move_notify'
    ? { allow_peer2peer: true, move_notify: unsupportedMoveNotify }
    : { allow_peer2peer: true };

/**
 * `ib_umem_dmabuf_get_pinned()`: attach with the pinned ops, pin, map once.
 * @returns the umem; the get errors; the pin or map error (everything undone). May sleep.
 */
export function* ibUmemDmabufGetPinned(
  ibdev: IbDevice,
  dmabuf: DmaBuf,
  offset: bigint,
  size: bigint,
  writable: boolean,
): KTaskOp<KResult<IbUmemDmabuf>> {
  const u = yield* ibUmemDmabufGet(
    ibdev,
    dmabuf,
    offset,
    size,
    writable,
    pinnedOps(dmabuf.world.facts.dmabufInvalidateOp),
  );
  if (!u.ok) return u;
  const umem = u.value;
  yield* dmaResvLock(dmabuf.resv, null);
  let r: KResult<unknown> = yield* dmaBufPin(umem.attach);
  if (r.ok) {
    umem.pinned = true;
    r = yield* ibUmemDmabufMapPages(umem);
    if (!r.ok) {
      dmaBufUnpin(umem.attach);
      umem.pinned = false;
    }
  }
  dmaResvUnlock(dmabuf.resv);
  if (!r.ok) {
    yield* ibUmemDmabufRelease(umem);
    return err(r.errno, r.detail);
  }
  return ok(umem);
}

/** `ib_umem_dmabuf_revoke()` (locked part): unmap, unpin, and refuse further maps. Resv lock held. */
export function ibUmemDmabufRevokeLocked(umem: IbUmemDmabuf): void {
  dmaResvAssertHeld(umem.attach.dmabuf.resv, 'ib_umem_dmabuf_revoke');
  if (umem.revoked) return;
  ibUmemDmabufUnmapPages(umem);
  if (umem.pinned) {
    dmaBufUnpin(umem.attach);
    umem.pinned = false;
  }
  umem.revoked = true;
}

/** `ib_umem_dmabuf_release()`: revoke, detach, drop the dma-buf reference. May sleep. */
export function* ibUmemDmabufRelease(umem: IbUmemDmabuf): KTaskOp<void> {
  const dmabuf = umem.attach.dmabuf;
  yield* dmaResvLock(dmabuf.resv, null);
  ibUmemDmabufRevokeLocked(umem);
  dmaResvUnlock(dmabuf.resv);
  yield* dmaBufDetach(dmabuf, umem.attach);
  dmaBufPut(dmabuf);
}
