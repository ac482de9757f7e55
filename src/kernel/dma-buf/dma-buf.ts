// The dma-buf object: a buffer one driver exports and other devices attach to (drivers/dma-buf/dma-buf.c,
// include/linux/dma-buf.h). This file: export, references and release, attach/detach, pin/unpin.
// Mapping, move/invalidate notifications, CPU access and revocation are in dma-buf-map.ts.
//
// Exporters implement `DmaBufOps`, importers may pass `DmaBufAttachOps`. An exporter with pin/unpin is
// *dynamic* (it can move the buffer); an attachment with importer ops is a *dynamic* importer (it can
// be told to drop its mappings). 6.1 papers over a mismatch by mapping once at attach time and caching
// the sg_table; newer kernels pin on map for static importers instead (see DmaBufFacts).

import type { DmaDirection } from '../dma/dma-types.js';
import { err, type KResult, ok } from '../errno.js';
import type { SgTable } from '../lib/scatterlist.js';
import { attachArg, callText } from './dma-buf-call.js';
import type { DmaBufVma } from './dma-buf-mmap.js';
import { type DmaResv, dmaResvFini, dmaResvInit, dmaResvLock, dmaResvUnlock } from './dma-resv.js';
import { dmaResvWaitTimeout } from './dma-resv-iter.js';
import { type KTaskOp, type KThread, MAX_SCHEDULE_TIMEOUT } from './sched.js';
import { type DmaBufWorld, warn, warnOn, withCall, withCallOp } from './world.js';

/** The device an attachment is for; any model device with a name (a DmaDevice fits). */
export interface DmaBufDev {
  readonly name: string;
}

/** What an op returns: a value, or a task operation when the op may sleep (move a buffer, wait for a copy). */
export type MaybeOp<T> = T | KTaskOp<T>;

const isOp = <T>(v: MaybeOp<T>): v is KTaskOp<T> =>
  typeof v === 'object' && v !== null && typeof (v as { next?: unknown }).next === 'function';

/** Run an op's result: yield* it when it is a task operation, else return it. */
export function* maybeOp<T>(v: MaybeOp<T>): KTaskOp<T> {
  if (isOp(v)) return yield* v;
  return v;
}

/** `struct dma_buf_ops`: the exporter's side. */
export interface DmaBufOps {
  /** 6.1: keep the first mapping of an attachment and hand it out again (not with pin/unpin). */
  readonly cache_sgt_mapping?: boolean;
  /** Check and prepare an attachment; an error refuses it (e.g. EOPNOTSUPP without peer2peer). */
  readonly attach?: (dmabuf: DmaBuf, attach: DmaBufAttachment) => KResult<undefined>;
  readonly detach?: (dmabuf: DmaBuf, attach: DmaBufAttachment) => void;
  /** Keep the buffer where it is (dynamic exporters); resv lock held. May sleep (move it first). */
  readonly pin?: (attach: DmaBufAttachment) => MaybeOp<KResult<undefined>>;
  readonly unpin?: (attach: DmaBufAttachment) => void;
  /** Build the device's view of the buffer; resv lock held for dynamic cases. May sleep (migrate it). */
  readonly map_dma_buf: (attach: DmaBufAttachment, dir: DmaDirection) => MaybeOp<KResult<SgTable>>;
  readonly unmap_dma_buf: (attach: DmaBufAttachment, sgt: SgTable, dir: DmaDirection) => void;
  /** The last reference is gone. */
  readonly release: (dmabuf: DmaBuf) => void;
  readonly begin_cpu_access?: (dmabuf: DmaBuf, dir: DmaDirection) => KResult<undefined>;
  /** Set up a user mapping: install the fault handler (dma-buf-mmap.ts). */
  readonly mmap?: (dmabuf: DmaBuf, vma: DmaBufVma) => KResult<undefined>;
  readonly end_cpu_access?: (dmabuf: DmaBuf, dir: DmaDirection) => KResult<undefined>;
}

/** `struct dma_buf_attach_ops`: the importer's side (its presence makes the attachment dynamic). */
export interface DmaBufAttachOps {
  /** The importer can reach peer memory (PCI P2P); exporters of device memory may insist on it. */
  readonly allow_peer2peer?: boolean;
  /**
   * ≤6.19: the buffer is moving; drop and recreate mappings. Required of dynamic importers. Resv lock
   * held. An importer that must wait for its hardware (mlx5 zapping an MR) returns a task operation:
   * the notification may sleep.
   */
  readonly move_notify?: (attach: DmaBufAttachment) => void | KTaskOp<void>;
  /** 7.0 name of the same notification, now optional; having it makes the attachment revocable. */
  readonly invalidate_mappings?: (attach: DmaBufAttachment) => void | KTaskOp<void>;
}

/** `struct dma_buf_export_info`. */
export interface DmaBufExportInfo {
  readonly expName: string;
  readonly sizeBytes: number;
  readonly ops: DmaBufOps | null;
  readonly priv: unknown;
  /** A reservation object to share; without one the dma-buf gets its own. */
  readonly resv?: DmaResv;
  /** try_module_get(owner) succeeds (false models an exporter module on its way out). */
  readonly ownerLive?: boolean;
}

export interface DmaBuf {
  readonly world: DmaBufWorld;
  readonly expName: string;
  readonly sizeBytes: number;
  readonly ops: DmaBufOps;
  readonly priv: unknown;
  readonly resv: DmaResv;
  readonly ownsResv: boolean;
  /** dmabuf->attachments (newest first, as list_add puts them). Changed under the resv lock. */
  readonly attachments: DmaBufAttachment[];
  /** References on the dma-buf's file. */
  fileRefs: number;
  released: boolean;
  /** Threads waiting in dmaBufWaitUnmapped() (dma-buf-map.ts). */
  readonly unmapWaiters: KThread[];
}

/** `struct dma_buf_attachment`. */
export interface DmaBufAttachment {
  readonly dmabuf: DmaBuf;
  readonly dev: DmaBufDev;
  readonly importerOps: DmaBufAttachOps | null;
  readonly importerPriv: unknown;
  /** The importer can do P2P; an exporter's attach may clear it when the path does not allow P2P. */
  peer2peer: boolean;
  /** The exporter's per-attachment data. */
  priv: unknown;
  /** 6.1 cached mapping and its direction. */
  sgt: SgTable | null;
  dir: DmaDirection;
  /** Mappings handed out and not yet unmapped (model bookkeeping for revocation). */
  mapped: number;
  detached: boolean;
}

/** dma_buf_is_dynamic(): the exporter can move the buffer (it has pin). */
export const dmaBufIsDynamic = (dmabuf: DmaBuf): boolean => dmabuf.ops.pin !== undefined;

/** dma_buf_attachment_is_dynamic(): the importer passed ops (even without an invalidate op). */
export const dmaBufAttachmentIsDynamic = (attach: DmaBufAttachment): boolean => attach.importerOps !== null;

/** dma_buf_attach_revocable() (7.0): the importer will drop its mappings when told to. */
export const dmaBufAttachRevocable = (attach: DmaBufAttachment): boolean =>
  attach.importerOps?.invalidate_mappings !== undefined;

/**
 * dma_buf_export(): wrap an exporter's buffer in a dma-buf holding one file reference.
 * @returns the dma-buf; EINVAL (with a WARN) when priv or ops is missing, when pin and unpin are not both
 *   given or both absent, or (6.1) cache_sgt_mapping is combined with pin/unpin; ENOENT when the owner
 *   module is going away.
 */
export function dmaBufExport(world: DmaBufWorld, info: DmaBufExportInfo): KResult<DmaBuf> {
  const ops = info.ops;
  if (
    warnOn(world, info.priv == null || ops === null, 'dma_buf_export', '!exp_info->priv || !exp_info->ops')
  ) {
    return err('EINVAL', 'export without priv or ops');
  }
  const pinnable = ops!.pin !== undefined || ops!.unpin !== undefined;
  if (
    world.facts.dmabufSgtCache &&
    warnOn(
      world,
      !!ops!.cache_sgt_mapping && pinnable,
      'dma_buf_export',
      'exp_info->ops->cache_sgt_mapping && (exp_info->ops->pin || exp_info->ops->unpin)',
    )
  ) {
    return err('EINVAL', 'cache_sgt_mapping cannot be combined with pin/unpin');
  }
  if (
    warnOn(
      world,
      (ops!.pin === undefined) !== (ops!.unpin === undefined),
      'dma_buf_export',
      '!exp_info->ops->pin != !exp_info->ops->unpin',
    )
  ) {
    return err('EINVAL', 'pin and unpin must come together');
  }
  if (info.ownerLive === false) return err('ENOENT', 'try_module_get() failed on the exporter module');
  return ok({
    world,
    expName: info.expName,
    sizeBytes: info.sizeBytes,
    ops: ops!,
    priv: info.priv,
    resv: info.resv ?? dmaResvInit(world),
    ownsResv: info.resv === undefined,
    attachments: [],
    fileRefs: 1,
    released: false,
    unmapWaiters: [],
  });
}

/** get_dma_buf(): another file reference. */
export function getDmaBuf(dmabuf: DmaBuf): DmaBuf {
  if (dmabuf.released) throw new Error(`get_dma_buf: ${dmabuf.expName} was already released`);
  dmabuf.fileRefs++;
  return dmabuf;
}

/**
 * dma_buf_put(): drop a file reference; the last one releases the buffer (dma_buf_release): the exporter's
 * release op, the embedded resv's fences, and a WARN if attachments are still there.
 */
export function dmaBufPut(dmabuf: DmaBuf): void {
  withCall(dmabuf.world, callText('dma_buf_put', { dmabuf: dmabuf.expName }), () => {
    if (warnOn(dmabuf.world, dmabuf.released, 'dma_buf_put', '!dmabuf || !dmabuf->file')) return;
    if (--dmabuf.fileRefs > 0) return;
    dmabuf.released = true;
    dmabuf.ops.release(dmabuf);
    if (dmabuf.ownsResv) dmaResvFini(dmabuf.resv);
    warnOn(
      dmabuf.world,
      dmabuf.attachments.length > 0,
      'dma_buf_release',
      '!list_empty(&dmabuf->attachments)',
    );
  });
}

/**
 * An attachment used after its dma-buf was released: the kernel would touch freed memory, which a
 * KASAN kernel reports as a slab use-after-free in `func`. @returns true (and reports) when released.
 */
export function dmaBufUseAfterFree(dmabuf: DmaBuf, func: string): boolean {
  if (!dmabuf.released) return false;
  warn(dmabuf.world, func, `BUG: KASAN: slab-use-after-free in ${func}`);
  return true;
}

function newAttachment(
  dmabuf: DmaBuf,
  dev: DmaBufDev,
  importerOps: DmaBufAttachOps | null,
  importerPriv: unknown,
): DmaBufAttachment {
  return {
    dmabuf,
    dev,
    importerOps,
    importerPriv,
    peer2peer: importerOps?.allow_peer2peer ?? false,
    priv: undefined,
    sgt: null,
    dir: 'none',
    mapped: 0,
    detached: false,
  };
}

/**
 * 6.1: an importer and exporter that differ in dynamic-ness get one mapping here, cached for the life of
 * the attachment. Before the 6.2 locking rework only a dynamic exporter's pin and map ran under the lock.
 */
function* premapAtAttach(attach: DmaBufAttachment): KTaskOp<KResult<undefined>> {
  const dmabuf = attach.dmabuf;
  const dynamic = dmaBufIsDynamic(dmabuf);
  const locked = dynamic || dmabuf.world.facts.dmabufMapLockedForAll;
  if (locked) yield* dmaResvLock(dmabuf.resv, null);
  const pinned = dynamic ? yield* maybeOp(dmabuf.ops.pin!(attach)) : ok(undefined);
  const sgt = pinned.ok ? yield* mapDmaBufCore(attach, 'bidirectional') : pinned;
  if (!sgt.ok && pinned.ok && dynamic) dmabuf.ops.unpin!(attach);
  if (locked) dmaResvUnlock(dmabuf.resv);
  if (!sgt.ok) return sgt;
  attach.sgt = sgt.value;
  attach.dir = 'bidirectional';
  return ok(undefined);
}

/**
 * __map_dma_buf(): the exporter's map, then for static importers an interruptible wait for the KERNEL
 * fences (moves and clears) so the importer never sees a buffer in flight.
 * @returns the table; the exporter's error; ERESTARTSYS if the wait is interrupted (the table is unmapped).
 */
export function* mapDmaBufCore(attach: DmaBufAttachment, dir: DmaDirection): KTaskOp<KResult<SgTable>> {
  const dmabuf = attach.dmabuf;
  const sgt = yield* maybeOp(dmabuf.ops.map_dma_buf(attach, dir));
  if (!sgt.ok || dmaBufAttachmentIsDynamic(attach)) return sgt;
  const r = yield* dmaResvWaitTimeout(dmabuf.resv, 'kernel', true, MAX_SCHEDULE_TIMEOUT);
  if (!r.ok) {
    dmabuf.ops.unmap_dma_buf(attach, sgt.value, dir);
    return r;
  }
  return sgt;
}

/**
 * dma_buf_dynamic_attach(): attach `dev`, as a dynamic importer when `importerOps` is given.
 * @returns the attachment; EINVAL (WARN) for a missing device, or (≤6.19) importer ops without
 *   move_notify; the exporter's attach error (e.g. EOPNOTSUPP, ENODEV); 6.1: errors of the pre-map.
 * Takes the resv lock: may sleep.
 */
export function dmaBufDynamicAttach(
  dmabuf: DmaBuf,
  dev: DmaBufDev | null,
  importerOps: DmaBufAttachOps | null,
  importerPriv: unknown = null,
): KTaskOp<KResult<DmaBufAttachment>> {
  const call = callText('dma_buf_dynamic_attach', {
    dmabuf: dmabuf.expName,
    dev: dev?.name ?? null,
    importer_ops: importerOps === null ? null : 'set',
  });
  return withCallOp(dmabuf.world, call, dynamicAttach(dmabuf, dev, importerOps, importerPriv));
}

function* dynamicAttach(
  dmabuf: DmaBuf,
  dev: DmaBufDev | null,
  importerOps: DmaBufAttachOps | null,
  importerPriv: unknown,
): KTaskOp<KResult<DmaBufAttachment>> {
  const world = dmabuf.world;
  if (dmaBufUseAfterFree(dmabuf, 'dma_buf_dynamic_attach')) return err('EINVAL', 'dma-buf already released');
  if (warnOn(world, dev === null, 'dma_buf_dynamic_attach', '!dmabuf || !dev'))
    return err('EINVAL', 'no device');
  const needsMoveNotify = world.facts.dmabufInvalidateOp === 'move_notify';
  if (
    needsMoveNotify &&
    warnOn(
      world,
      importerOps !== null && !importerOps.move_notify,
      'dma_buf_dynamic_attach',
      'importer_ops && !importer_ops->move_notify',
    )
  ) {
    return err('EINVAL', 'dynamic importer without move_notify');
  }
  const attach = newAttachment(dmabuf, dev!, importerOps, importerPriv);
  if (dmabuf.ops.attach) {
    const r = dmabuf.ops.attach(dmabuf, attach);
    if (!r.ok) return r;
  }
  yield* dmaResvLock(dmabuf.resv, null);
  dmabuf.attachments.unshift(attach);
  dmaResvUnlock(dmabuf.resv);
  if (world.facts.dmabufSgtCache && dmaBufAttachmentIsDynamic(attach) !== dmaBufIsDynamic(dmabuf)) {
    const r = yield* premapAtAttach(attach);
    if (!r.ok) {
      yield* dmaBufDetach(dmabuf, attach);
      return r;
    }
  }
  return ok(attach);
}

/** dma_buf_attach(): a static importer (no importer ops). */
export const dmaBufAttach = (dmabuf: DmaBuf, dev: DmaBufDev | null): KTaskOp<KResult<DmaBufAttachment>> =>
  dmaBufDynamicAttach(dmabuf, dev, null, null);

/**
 * dma_buf_detach(): drop the attachment (6.1 first unmaps and unpins the cached mapping); the resv lock is
 * taken only around the list removal, the exporter's detach runs outside it. May sleep.
 */
export function dmaBufDetach(dmabuf: DmaBuf, attach: DmaBufAttachment): KTaskOp<void> {
  const call = callText('dma_buf_detach', { dmabuf: dmabuf.expName, attach: attachArg(attach) });
  return withCallOp(dmabuf.world, call, detach(dmabuf, attach));
}

function* detach(dmabuf: DmaBuf, attach: DmaBufAttachment): KTaskOp<void> {
  if (dmaBufUseAfterFree(dmabuf, 'dma_buf_detach')) return;
  if (
    warnOn(
      dmabuf.world,
      attach.dmabuf !== dmabuf || attach.detached,
      'dma_buf_detach',
      '!dmabuf || !attach || dmabuf != attach->dmabuf',
    )
  )
    return;
  const dynamic = dmaBufIsDynamic(dmabuf);
  if (attach.sgt) {
    // 6.1 unmaps the cached table under the lock only for a dynamic exporter; 6.2+ holds it throughout.
    const locked = dynamic || dmabuf.world.facts.dmabufMapLockedForAll;
    if (locked) yield* dmaResvLock(dmabuf.resv, null);
    dmabuf.ops.unmap_dma_buf(attach, attach.sgt, attach.dir);
    attach.sgt = null;
    if (dynamic) dmabuf.ops.unpin!(attach);
    if (locked) dmaResvUnlock(dmabuf.resv);
  }
  yield* dmaResvLock(dmabuf.resv, null);
  const i = dmabuf.attachments.indexOf(attach);
  if (i >= 0) dmabuf.attachments.splice(i, 1);
  dmaResvUnlock(dmabuf.resv);
  dmabuf.ops.detach?.(dmabuf, attach);
  attach.detached = true;
}

export { dmaBufPin, dmaBufUnpin } from './dma-buf-pin.js';

/** Report a problem the kernel prints without WARN (pr_debug and friends). */
export function dmaBufLog(world: DmaBufWorld, line: string): void {
  world.log.push(line);
}
