// VFIO PCI's dma-buf exporter (drivers/vfio/pci/vfio_pci_dmabuf.c, 6.19 with the 7.0 revoke series):
// a user asks VFIO_DEVICE_FEATURE_DMA_BUF for page-aligned ranges of a BAR; the dma-buf maps them for
// an importer through dma_buf_phys_vec_to_sgt() with the BAR's P2P provider. The device can take the
// BAR away at any time (reset, memory decoding off, close, unplug): vfio_pci_dma_buf_move() revokes.
//
//   revoke (7.0): lock resv; revoked = true; dma_buf_invalidate_mappings(); wait for every fence
//                 (BOOKKEEP); unlock; drop the initial kref and wait until every mapping is unmapped
//   attach: needs peer2peer (EOPNOTSUPP), not revoked (ENODEV), a revocable importer (EOPNOTSUPP)
//   map:    refused while revoked (ENODEV); each mapping holds a kref
//
// Differences to 6.19 kept out of the model: 6.19 had pin -> EOPNOTSUPP (so pinned importers failed at
// map) and no waits in move; 7.0 dropped pin/unpin and waits as above. The cleanup path includes the
// 2026 fix that skips the kref drop for a dma-buf already revoked by a reset.

import { type Bytes, bytes, physAddr } from '../../../hw/addr.js';
import { WaitQueue, waitOn } from '../../../sim/task.js';
import {
  type DmaBuf,
  type DmaBufAttachment,
  type DmaBufOps,
  dmaBufAttachRevocable,
  dmaBufExport,
} from '../../dma-buf/dma-buf.js';
import { dmaBufInvalidateMappings } from '../../dma-buf/dma-buf-map.js';
import { dmaBufFreeSgt, dmaBufPhysVecToSgt, type PhysVec } from '../../dma-buf/dma-buf-mapping.js';
import { dmaResvAssertHeld, dmaResvLock, dmaResvUnlock } from '../../dma-buf/dma-resv.js';
import { dmaResvWaitTimeout } from '../../dma-buf/dma-resv-iter.js';
import { type KTaskOp, MAX_SCHEDULE_TIMEOUT } from '../../dma-buf/sched.js';
import { err, type KResult, ok } from '../../errno.js';
import { type P2pdmaProvider, pcimP2pdmaProvider } from '../../pci/p2pdma-provider.js';
import { downWrite, lockdepAssertHeldWrite, upWrite } from '../rwsem.js';
import { note } from '../timeline.js';
import {
  type VfioPciCoreDevice,
  vfioDevicePutRegistration,
  vfioDeviceTryGetRegistration,
  vfioPciMemoryEnabled,
} from './vfio-pci-core.js';
import {
  VFIO_DEVICE_FEATURE_GET,
  type VfioDeviceFeatureDmaBuf,
  validateDmabufInput,
  vfioCheckFeature,
} from './vfio-uapi.js';

/** `struct vfio_pci_dma_buf`. */
export interface VfioPciDmaBuf {
  dmabuf: DmaBuf;
  /** The device; null once vfio_pci_dma_buf_cleanup() detached it. */
  vdev: VfioPciCoreDevice | null;
  readonly size: Bytes;
  readonly physVec: readonly PhysVec[];
  readonly provider: P2pdmaProvider;
  readonly nrRanges: number;
  revoked: boolean;
  /** `kref`: 1 while not revoked, plus one per mapping. */
  kref: number;
  /** `comp`: completed when the kref reaches 0 (every mapping gone after a revoke). */
  readonly comp: { done: boolean; readonly wq: WaitQueue };
}

const privOf = (dmabuf: DmaBuf): VfioPciDmaBuf => dmabuf.priv as VfioPciDmaBuf;

/** `kref_put(&priv->kref, vfio_pci_dma_buf_done)`: the last reference completes `comp`. */
function krefPut(priv: VfioPciDmaBuf): void {
  if (priv.kref <= 0) throw new Error('BUG: refcount_t: underflow; use-after-free (vfio_pci_dma_buf kref)');
  if (--priv.kref === 0) {
    priv.comp.done = true;
    priv.comp.wq.wakeAll();
  }
}

function* waitForCompletion(priv: VfioPciDmaBuf): KTaskOp<void> {
  while (!priv.comp.done) yield waitOn(priv.comp.wq);
}

/** The exporter ops (`vfio_pci_dmabuf_ops`). */
export const vfioPciDmabufOps: DmaBufOps = {
  attach(dmabuf, attach) {
    const priv = privOf(dmabuf);
    if (!attach.peer2peer)
      return err('EOPNOTSUPP', 'vfio_pci_dma_buf_attach: importer cannot do peer-to-peer');
    if (priv.revoked) return err('ENODEV', 'vfio_pci_dma_buf_attach: the BAR is revoked');
    if (!dmaBufAttachRevocable(attach))
      return err(
        'EOPNOTSUPP',
        'vfio_pci_dma_buf_attach: importer cannot be revoked (no invalidate_mappings)',
      );
    if (priv.vdev) note(priv.vdev.timeline, priv.vdev.name, 'attach', attach.dev.name);
    return ok(undefined);
  },
  map_dma_buf(attach, dir) {
    const priv = privOf(attach.dmabuf);
    dmaResvAssertHeld(priv.dmabuf.resv, 'vfio_pci_dma_buf_map');
    if (priv.revoked) return err('ENODEV', 'vfio_pci_dma_buf_map: the BAR is revoked');
    const sgt = dmaBufPhysVecToSgt(attach, priv.provider, priv.physVec, priv.size, dir);
    if (sgt.ok) {
      priv.kref++;
      if (priv.vdev) note(priv.vdev.timeline, priv.vdev.name, 'map', `for ${attach.dev.name}`);
    }
    return sgt;
  },
  unmap_dma_buf(attach, sgt, dir) {
    dmaBufFreeSgt(attach, sgt, dir);
    krefPut(privOf(attach.dmabuf));
  },
  release(dmabuf) {
    const priv = privOf(dmabuf);
    // The kernel takes memory_lock for writing around the list removal; release cannot sleep here.
    if (priv.vdev) {
      const i = priv.vdev.dmabufs.indexOf(priv);
      if (i >= 0) priv.vdev.dmabufs.splice(i, 1);
      vfioDevicePutRegistration(priv.vdev);
    }
  },
};

/** Fill the physical ranges of a BAR (vfio_pci_core_fill_phys_vec). @returns EINVAL, EOVERFLOW. */
function fillPhysVec(req: VfioDeviceFeatureDmaBuf, start: bigint, len: bigint): KResult<PhysVec[]> {
  const U64 = 1n << 64n;
  const maxAddr = BigInt.asUintN(64, start + len);
  const out: PhysVec[] = [];
  for (const r of req.dmaRanges) {
    if (r.length === 0n) return err('EINVAL', 'a range of length 0');
    const paddr = start + r.offset;
    const end = paddr + r.length;
    if (paddr >= U64 || end >= U64) return err('EOVERFLOW', 'range offset + length overflows');
    if (end > maxAddr) return err('EINVAL', 'range ends beyond the BAR');
    out.push({ paddr: physAddr(paddr), len: bytes(r.length) });
  }
  return ok(out);
}

/**
 * `vfio_pci_core_get_dmabuf_phys()`: the BAR's provider and the ranges as CPU physical addresses.
 * @returns EINVAL (no provider: not a memory BAR or not mappable; a range beyond the BAR), EOVERFLOW.
 */
function getDmabufPhys(
  vdev: VfioPciCoreDevice,
  req: VfioDeviceFeatureDmaBuf,
): KResult<{ provider: P2pdmaProvider; physVec: PhysVec[] }> {
  const provider = pcimP2pdmaProvider(vdev.k, vdev.pdev, req.regionIndex);
  if (provider === null) return err('EINVAL', `BAR ${req.regionIndex} has no P2P provider`);
  const bar = vdev.pdev.bars.find((b) => b.index === req.regionIndex)!;
  const v = fillPhysVec(req, bar.cpuStart, bar.size);
  return v.ok ? ok({ provider, physVec: v.value }) : v;
}

/**
 * `vfio_pci_core_feature_dma_buf()`: VFIO_DEVICE_FEATURE with VFIO_DEVICE_FEATURE_DMA_BUF.
 * @returns the new dma-buf (its fd), or 0 for a PROBE; EOPNOTSUPP when the driver cannot export;
 *   EINVAL (bad feature flags, argsz too small, no ranges, flags != 0, a zero or unaligned range, a
 *   total that overflows or has bit 63 set, no provider for the BAR, a range beyond the BAR); EFAULT
 *   (unreadable argument or ranges); ENODEV (region_index >= VFIO_PCI_ROM_REGION_INDEX, device
 *   unregistered); ENOMEM (ranges array over KMALLOC_MAX_SIZE); EOVERFLOW (offset + length wraps).
 * May sleep (memory_lock, resv lock).
 */
export function* vfioPciCoreFeatureDmaBuf(
  vdev: VfioPciCoreDevice,
  flags: number,
  arg: VfioDeviceFeatureDmaBuf,
  argsz: number,
): KTaskOp<KResult<DmaBuf | 0>> {
  if (!vdev.getDmabufPhys) return err('EOPNOTSUPP', 'the driver has no get_dmabuf_phys');
  const chk = vfioCheckFeature(flags, argsz, VFIO_DEVICE_FEATURE_GET);
  if (!chk.ok || chk.value === 0) return chk.ok ? ok(0) : chk;
  const v = validateDmabufInput(arg);
  if (!v.ok) return v;
  const phys = getDmabufPhys(vdev, arg);
  if (!phys.ok) return phys;
  if (!vfioDeviceTryGetRegistration(vdev)) return err('ENODEV', 'the device is being unregistered');
  const priv: VfioPciDmaBuf = {
    dmabuf: null as unknown as DmaBuf,
    vdev,
    size: v.value,
    physVec: phys.value.physVec,
    provider: phys.value.provider,
    nrRanges: arg.nrRanges,
    revoked: false,
    kref: 1,
    comp: { done: false, wq: new WaitQueue() },
  };
  const d = dmaBufExport(vdev.world, {
    expName: 'vfio_pci_core',
    sizeBytes: Number(v.value),
    ops: vfioPciDmabufOps,
    priv,
  });
  if (!d.ok) {
    vfioDevicePutRegistration(vdev);
    return d;
  }
  priv.dmabuf = d.value;
  yield* downWrite(vdev.world, vdev.memoryLock);
  yield* dmaResvLock(d.value.resv, null);
  priv.revoked = !vfioPciMemoryEnabled(vdev);
  vdev.dmabufs.push(priv);
  dmaResvUnlock(d.value.resv);
  upWrite(vdev.memoryLock);
  note(
    vdev.timeline,
    vdev.name,
    'export',
    `BAR ${arg.regionIndex}, ${arg.nrRanges} range(s), ${v.value} bytes`,
  );
  return ok(d.value);
}

/** `get_file_active()`: the dma-buf's file still has references (it is not being released). */
const fileActive = (priv: VfioPciDmaBuf): boolean => !priv.dmabuf.released && priv.dmabuf.fileRefs > 0;

/** Revoke (or restore) one dma-buf: the 7.0 sequence of vfio_pci_dma_buf_move(). */
function* moveOne(priv: VfioPciDmaBuf, revoked: boolean): KTaskOp<void> {
  const resv = priv.dmabuf.resv;
  yield* dmaResvLock(resv, null);
  if (revoked) priv.revoked = true;
  yield* dmaBufInvalidateMappings(priv.dmabuf);
  yield* dmaResvWaitTimeout(resv, 'bookkeep', false, MAX_SCHEDULE_TIMEOUT);
  dmaResvUnlock(resv);
  if (revoked) {
    krefPut(priv);
    yield* waitForCompletion(priv);
    return;
  }
  priv.kref = 1;
  priv.comp.done = false;
  yield* dmaResvLock(resv, null);
  priv.revoked = false;
  dmaResvUnlock(resv);
}

/**
 * `vfio_pci_dma_buf_move()`: revoke (true) or restore (false) every dma-buf of the device. Revoke returns
 * only when importers were told, every fence signaled, and every mapping was unmapped.
 * Precondition: memory_lock held for writing (lockdep-asserted). May sleep.
 */
export function* vfioPciDmaBufMove(vdev: VfioPciCoreDevice, revoked: boolean): KTaskOp<void> {
  lockdepAssertHeldWrite(vdev.world, vdev.memoryLock, 'vfio_pci_dma_buf_move');
  for (const priv of [...vdev.dmabufs]) {
    if (!fileActive(priv)) continue;
    if (priv.revoked !== revoked) yield* moveOne(priv, revoked);
  }
}

/** `vfio_pci_dma_buf_cleanup()`: device close: revoke every dma-buf for good and detach it. May sleep. */
export function* vfioPciDmaBufCleanup(vdev: VfioPciCoreDevice): KTaskOp<void> {
  yield* downWrite(vdev.world, vdev.memoryLock);
  for (const priv of [...vdev.dmabufs]) {
    if (!fileActive(priv)) continue;
    const resv = priv.dmabuf.resv;
    yield* dmaResvLock(resv, null);
    vdev.dmabufs.splice(vdev.dmabufs.indexOf(priv), 1);
    priv.vdev = null;
    const wasRevoked = priv.revoked;
    priv.revoked = true;
    yield* dmaBufInvalidateMappings(priv.dmabuf);
    yield* dmaResvWaitTimeout(resv, 'bookkeep', false, MAX_SCHEDULE_TIMEOUT);
    dmaResvUnlock(resv);
    if (!wasRevoked) {
      krefPut(priv);
      yield* waitForCompletion(priv);
    }
    vfioDevicePutRegistration(vdev);
  }
  upWrite(vdev.memoryLock);
}

/**
 * `vfio_pci_dma_buf_iommufd_map()`: the private interconnect iommufd uses to get the BAR's physical range
 * (it programs its IO page table itself). Resv lock held.
 * @returns the single range; EOPNOTSUPP for a dma-buf VFIO did not export or with more than one range;
 *   ENODEV while revoked.
 */
export function vfioPciDmaBufIommufdMap(attach: DmaBufAttachment): KResult<PhysVec> {
  dmaResvAssertHeld(attach.dmabuf.resv, 'vfio_pci_dma_buf_iommufd_map');
  if (attach.dmabuf.ops !== vfioPciDmabufOps) return err('EOPNOTSUPP', 'not a VFIO dma-buf');
  const priv = privOf(attach.dmabuf);
  if (priv.revoked) return err('ENODEV', 'the BAR is revoked');
  if (priv.nrRanges !== 1) return err('EOPNOTSUPP', 'iommufd needs exactly one range');
  return ok(priv.physVec[0]!);
}
