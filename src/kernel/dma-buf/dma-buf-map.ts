// Mapping a dma-buf for a device and taking it away again (drivers/dma-buf/dma-buf.c): map/unmap with
// the resv locking rules, pin-on-map, the KERNEL-fence wait for static importers, the DMA_API_DEBUG page
// alignment check, move_notify / invalidate_mappings, CPU access, and the 7.0 revoke sequence.
//
//   importer                      dma-buf core                         exporter
//   lock resv ------------------> map_attachment: pin if pin-on-map --> ops->pin
//                                 ops->map_dma_buf ------------------> sg_table
//                                 static importer: wait KERNEL fences
//   ... DMA ...
//   unmap_attachment -----------> ops->unmap_dma_buf, unpin if pinned on map
//   exporter moves/revokes: lock resv, invalidate_mappings -> importer's op -> importer unmaps

import type { DmaDirection } from '../dma/dma-types.js';
import { err, type KResult, ok } from '../errno.js';
import { forEachSgtableDmaSg, type SgTable } from '../lib/scatterlist.js';
import {
  type DmaBuf,
  type DmaBufAttachment,
  dmaBufAttachmentIsDynamic,
  dmaBufIsDynamic,
  dmaBufLog,
  dmaBufUseAfterFree,
  mapDmaBufCore,
  maybeOp,
} from './dma-buf.js';
import { attachArg, callText, DMA_DIR_NAME } from './dma-buf-call.js';
import { dmaResvAssertHeld, dmaResvHeld, dmaResvLock, dmaResvUnlock, dmaResvUsageRw } from './dma-resv.js';
import { dmaResvWaitTimeout } from './dma-resv-iter.js';
import { current, type KTaskOp, MAX_SCHEDULE_TIMEOUT, scheduleTimeout, wakeUpProcess } from './sched.js';
import { warn, warnOn, warnOnOnce, withCall, withCallOp } from './world.js';

const PAGE_SIZE = 4096n;

/**
 * dma_buf_pin_on_map(): does mapping pin the buffer? 6.1: a dynamic exporter without
 * CONFIG_DMABUF_MOVE_NOTIFY pins for every map. Newer: exporters with pin, for static importers.
 */
export function dmaBufPinOnMap(attach: DmaBufAttachment): boolean {
  const world = attach.dmabuf.world;
  if (world.facts.dmabufMoveNotifyOptional) return dmaBufIsDynamic(attach.dmabuf) && !world.dmabufMoveNotify;
  return attach.dmabuf.ops.pin !== undefined && !dmaBufAttachmentIsDynamic(attach);
}

/** Does the importer get told about moves (the profile's move_notify / invalidate_mappings op)? */
export function dmaBufHasInvalidateOp(attach: DmaBufAttachment): boolean {
  const op = attach.dmabuf.world.facts.dmabufInvalidateOp;
  return attach.importerOps?.[op] !== undefined;
}

/**
 * The lock rule of map/unmap, in the kernel's two steps: on entry every importer (6.2+) or dynamic
 * importers only (6.1); then, 6.1 only, once past the cached table, any mapping of a dynamic exporter.
 */
function assertMapLocking(attach: DmaBufAttachment, func: string, step: 'entry' | 'exporter'): void {
  const { dmabuf } = attach;
  const all = dmabuf.world.facts.dmabufMapLockedForAll;
  const check = step === 'entry' ? all || dmaBufAttachmentIsDynamic(attach) : !all && dmaBufIsDynamic(dmabuf);
  if (check) dmaResvAssertHeld(dmabuf.resv, func);
}

/** CONFIG_DMA_API_DEBUG: every DMA segment must be page aligned. @returns false if one is not. */
function checkPageAligned(attach: DmaBufAttachment, sgt: SgTable): boolean {
  let aligned = true;
  for (const sg of forEachSgtableDmaSg(sgt)) {
    const addr = BigInt(sg.dmaAddress);
    const len = sg.dmaLength;
    if (addr % PAGE_SIZE !== 0n || BigInt(len) % PAGE_SIZE !== 0n) {
      dmaBufLog(
        attach.dmabuf.world,
        `dma_buf_map_attachment: addr ${addr.toString(16)} or len ${len.toString(16)} is not page aligned!`,
      );
      aligned = false;
    }
  }
  return aligned;
}

/**
 * dma_buf_map_attachment(): the device's sg_table for the buffer. Resv lock held (see the lock rule).
 * @returns the table; EINVAL (WARN) for a detached attachment; EBUSY (6.1) for a cached mapping of another
 *   direction; the exporter's pin or map error; ERESTARTSYS when a static importer's fence wait is
 *   interrupted; EINVAL (newest, CONFIG_DMA_API_DEBUG) for segments that are not page aligned.
 * May sleep (static importers wait for KERNEL fences).
 */
export function dmaBufMapAttachment(attach: DmaBufAttachment, dir: DmaDirection): KTaskOp<KResult<SgTable>> {
  const call = callText('dma_buf_map_attachment', { attach: attachArg(attach), dir: DMA_DIR_NAME[dir] });
  return withCallOp(attach.dmabuf.world, call, mapAttachment(attach, dir));
}

function* mapAttachment(attach: DmaBufAttachment, dir: DmaDirection): KTaskOp<KResult<SgTable>> {
  const { dmabuf } = attach;
  const world = dmabuf.world;
  if (dmaBufUseAfterFree(dmabuf, 'dma_buf_map_attachment')) return err('EINVAL', 'dma-buf already released');
  if (warnOn(world, attach.detached, 'dma_buf_map_attachment', '!attach || !attach->dmabuf')) {
    return err('EINVAL', 'attachment is detached');
  }
  assertMapLocking(attach, 'dma_buf_map_attachment', 'entry');
  if (attach.sgt) {
    // Two mappings with different directions of one attachment are not allowed.
    if (attach.dir !== dir && attach.dir !== 'bidirectional') {
      return err('EBUSY', `cached mapping is ${attach.dir}`);
    }
    return ok(attach.sgt);
  }
  assertMapLocking(attach, 'dma_buf_map_attachment', 'exporter');
  const pin = dmaBufPinOnMap(attach);
  if (pin) {
    const r = yield* maybeOp(dmabuf.ops.pin!(attach));
    // Exporters must not make a buffer inaccessible while static attachments exist.
    if (!world.facts.dmabufSgtCache)
      warnOnOnce(world, !r.ok && r.errno === 'EBUSY', 'dma_buf_map_attachment', 'ret == -EBUSY');
    if (!r.ok) return r;
  }
  let sgt = yield* mapDmaBufCore(attach, dir);
  if (
    sgt.ok &&
    world.dmaApiDebug &&
    !checkPageAligned(attach, sgt.value) &&
    world.facts.dmabufUnalignedMapFails
  ) {
    dmabuf.ops.unmap_dma_buf(attach, sgt.value, dir);
    sgt = err('EINVAL', 'DMA segment not page aligned');
  }
  if (!sgt.ok) {
    if (pin) dmabuf.ops.unpin!(attach);
    return sgt;
  }
  if (world.facts.dmabufSgtCache && dmabuf.ops.cache_sgt_mapping) {
    attach.sgt = sgt.value;
    attach.dir = dir;
  } else {
    attach.mapped++;
  }
  return sgt;
}

/** dma_buf_unmap_attachment(): give back a table from dmaBufMapAttachment. Resv lock held (see the rule). */
export function dmaBufUnmapAttachment(attach: DmaBufAttachment, sgt: SgTable, dir: DmaDirection): void {
  const call = callText('dma_buf_unmap_attachment', { attach: attachArg(attach), dir: DMA_DIR_NAME[dir] });
  withCall(attach.dmabuf.world, call, () => unmapAttachment(attach, sgt, dir));
}

function unmapAttachment(attach: DmaBufAttachment, sgt: SgTable, dir: DmaDirection): void {
  const { dmabuf } = attach;
  if (dmaBufUseAfterFree(dmabuf, 'dma_buf_unmap_attachment')) return;
  if (
    warnOn(
      dmabuf.world,
      attach.detached,
      'dma_buf_unmap_attachment',
      '!attach || !attach->dmabuf || !sg_table',
    )
  )
    return;
  assertMapLocking(attach, 'dma_buf_unmap_attachment', 'entry');
  if (attach.sgt === sgt) return; // the cached mapping lives until detach
  assertMapLocking(attach, 'dma_buf_unmap_attachment', 'exporter');
  dmabuf.ops.unmap_dma_buf(attach, sgt, dir);
  if (dmaBufPinOnMap(attach)) dmabuf.ops.unpin!(attach);
  if (attach.mapped > 0 && --attach.mapped === 0) {
    for (const t of dmabuf.unmapWaiters.splice(0)) wakeUpProcess(t);
  }
}

/** dma_buf_map_attachment_unlocked() (6.2+): take the resv lock around the map. */
export function* dmaBufMapAttachmentUnlocked(
  attach: DmaBufAttachment,
  dir: DmaDirection,
): KTaskOp<KResult<SgTable>> {
  yield* dmaResvLock(attach.dmabuf.resv, null);
  const r = yield* dmaBufMapAttachment(attach, dir);
  dmaResvUnlock(attach.dmabuf.resv);
  return r;
}

/** dma_buf_unmap_attachment_unlocked() (6.2+). */
export function* dmaBufUnmapAttachmentUnlocked(
  attach: DmaBufAttachment,
  sgt: SgTable,
  dir: DmaDirection,
): KTaskOp<void> {
  yield* dmaResvLock(attach.dmabuf.resv, null);
  dmaBufUnmapAttachment(attach, sgt, dir);
  dmaResvUnlock(attach.dmabuf.resv);
}

/**
 * dma_buf_move_notify() (≤6.19) / dma_buf_invalidate_mappings() (7.0): tell every dynamic importer to drop
 * its mappings. Resv lock held. 7.0 skips importers without the op. May sleep when an importer's
 * notification waits for its hardware.
 */
export function dmaBufInvalidateMappings(dmabuf: DmaBuf): KTaskOp<void> {
  const op = dmabuf.world.facts.dmabufInvalidateOp;
  const func = op === 'move_notify' ? 'dma_buf_move_notify' : 'dma_buf_invalidate_mappings';
  return withCallOp(dmabuf.world, callText(func, { dmabuf: dmabuf.expName }), invalidate(dmabuf, func));
}

function* invalidate(dmabuf: DmaBuf, func: string): KTaskOp<void> {
  const op = dmabuf.world.facts.dmabufInvalidateOp;
  dmaResvAssertHeld(dmabuf.resv, func);
  for (const attach of [...dmabuf.attachments]) {
    const wait = attach.importerOps?.[op]?.(attach);
    if (wait) yield* wait;
  }
}

export const dmaBufMoveNotify = dmaBufInvalidateMappings;

/**
 * dma_buf_begin_cpu_access(): the exporter's hook, then wait for the implicit fences a CPU access of `dir`
 * must see (dma_resv_usage_rw(write), write = bidirectional or to-device). Must not hold the resv lock.
 * @returns ok; the exporter's error; ERESTARTSYS if the wait is interrupted.
 */
export function* dmaBufBeginCpuAccess(dmabuf: DmaBuf, dir: DmaDirection): KTaskOp<KResult<undefined>> {
  if (dmaResvHeld(dmabuf.resv)) {
    warn(
      dmabuf.world,
      'dma_buf_begin_cpu_access',
      'WARNING: possible recursive locking detected (might_lock)',
    );
  }
  const r = dmabuf.ops.begin_cpu_access?.(dmabuf, dir) ?? ok(undefined);
  if (!r.ok) return r;
  const write = dir === 'bidirectional' || dir === 'to-device';
  const w = yield* dmaResvWaitTimeout(dmabuf.resv, dmaResvUsageRw(write), true, MAX_SCHEDULE_TIMEOUT);
  return w.ok ? ok(undefined) : w;
}

/** dma_buf_end_cpu_access(). @returns ok or the exporter's error. */
export function dmaBufEndCpuAccess(dmabuf: DmaBuf, dir: DmaDirection): KResult<undefined> {
  return dmabuf.ops.end_cpu_access?.(dmabuf, dir) ?? ok(undefined);
}

/** Sleep until no importer that gets invalidations still holds a mapping. */
export function* dmaBufWaitUnmapped(dmabuf: DmaBuf): KTaskOp<void> {
  const world = dmabuf.world;
  const me = current(world);
  while (dmabuf.attachments.some((a) => dmaBufHasInvalidateOp(a) && a.mapped > 0)) {
    dmabuf.unmapWaiters.push(me);
    yield* scheduleTimeout(world, MAX_SCHEDULE_TIMEOUT, 'uninterruptible');
  }
}

/**
 * The revoke sequence the 7.0 documentation of dma_buf_invalidate_mappings() asks of exporters (VFIO,
 * RDMA): under the resv lock mark the buffer revoked (`setRevoked`, so new maps are refused) and
 * invalidate; then (1) wait for every fence (BOOKKEEP) — until then importers may still access the
 * memory — and (2) wait until each importer with the op has unmapped. Pinned importers without the op
 * may never unmap and are not waited for. A model helper, not a kernel function.
 */
export function* dmaBufRevoke(dmabuf: DmaBuf, setRevoked: () => void): KTaskOp<void> {
  yield* dmaResvLock(dmabuf.resv, null);
  setRevoked();
  yield* dmaBufInvalidateMappings(dmabuf);
  dmaResvUnlock(dmabuf.resv);
  yield* dmaResvWaitTimeout(dmabuf.resv, 'bookkeep', false, MAX_SCHEDULE_TIMEOUT);
  yield* dmaBufWaitUnmapped(dmabuf);
}
