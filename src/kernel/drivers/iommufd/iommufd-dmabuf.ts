// iommufd importing a dma-buf into an IO address space (drivers/iommu/iommufd/pages.c, ioas.c, 6.19 +
// the 7.0 "iommufd: Add dma_buf_pin()"): IOMMU_IOAS_MAP_FILE with a dma-buf fd attaches dynamically as
// a revocable, pinned importer, asks VFIO's private interconnect for the BAR's physical range, and
// maps it with iommu_map() into each domain of the IOAS. Revocation unmaps it from every domain inside
// the notification, so when the exporter's revoke returns the IOMMU no longer translates the range.
//
//   map_file:  dma_buf_dynamic_attach(iommufd dev, revoke ops) -> lock resv -> dma_buf_pin
//              -> vfio_pci_dma_buf_iommufd_map (phys) -> unlock -> iommu_map(domain, iova, phys, MMIO)
//   revoke:    invalidate_mappings -> (pages mutex) iommu_unmap every tracked (area, domain); phys.len = 0
//   unmap:     iommu_unmap (unless revoked) -> dma_buf_unpin -> dma_buf_detach -> dma_buf_put
//
// One IOAS with one paging domain (an iommufd_hwpt_paging) stands for the general case. The pages mutex
// is not modelled: nothing sleeps while it is held.

import { type Bytes, bytes, type DmaAddr, PAGE_SIZE_N, physAddr } from '../../../hw/addr.js';
import type { IommuUnit } from '../../../hw/iommu/iommu.js';
import type { PciFunction } from '../../../hw/pci.js';
import {
  type DmaBuf,
  type DmaBufAttachment,
  type DmaBufAttachOps,
  type DmaBufDev,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufPin,
  dmaBufPut,
  dmaBufUnpin,
  getDmaBuf,
} from '../../dma-buf/dma-buf.js';
import { dmaBufWorldOf } from '../../dma-buf/dma-buf-kernel.js';
import type { PhysVec } from '../../dma-buf/dma-buf-mapping.js';
import { dmaResvLock, dmaResvUnlock } from '../../dma-buf/dma-resv.js';
import type { KTaskOp } from '../../dma-buf/sched.js';
import type { DmaBufWorld } from '../../dma-buf/world.js';
import { err, type KResult, ok } from '../../errno.js';
import type { IommuDmaSetup } from '../../iommu/dma-iommu-setup.js';
import {
  IOMMU_MMIO,
  IOMMU_READ,
  IOMMU_WRITE,
  type IommuDomain,
  iommuAttachDevice,
  iommuMap,
  iommuUnmap,
} from '../../iommu/iommu.js';
import { iommuDomainAlloc } from '../../iommu/iommu-driver.js';
import type { Kernel } from '../../kernel.js';
import { note, type Timeline } from '../timeline.js';
import { vfioPciDmaBufIommufdMap } from '../vfio/vfio-pci-dmabuf.js';

/** `IOMMU_IOAS_MAP_READABLE` / `IOMMU_IOAS_MAP_WRITEABLE`. */
export const IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
export const IOMMU_IOAS_MAP_READABLE = 1 << 2;
/** `MAX_NPFNS`: the u32 page count of a pfn batch entry. */
export const MAX_NPFNS = 0xffff_ffffn;

/** An iommufd context with one IOAS backed by one paging domain. */
export interface IommufdCtx {
  readonly k: Kernel;
  readonly world: DmaBufWorld;
  readonly unit: IommuUnit;
  readonly domain: IommuDomain;
  /** `iommufd_global_device()`: the dummy device iommufd attaches dma-bufs with. */
  readonly globalDev: DmaBufDev;
  readonly areas: IoptArea[];
  readonly timeline: Timeline | null;
  /** The IOTLB invalidation's drain: returns once no request translated by the old entries is in flight. */
  readonly drain: (() => KTaskOp<void>) | null;
}

/** `struct iopt_pages` of type IOPT_ADDRESS_DMABUF. */
export interface IoptPagesDmabuf {
  attach: DmaBufAttachment | null;
  /** The exporter's physical range; len 0 once revoked. */
  phys: { paddr: bigint; len: bigint };
  /** Byte offset of the mapping into the dma-buf (page aligned). */
  readonly start: bigint;
  readonly length: Bytes;
  readonly writable: boolean;
  /** The (area, domain) pairs the range is mapped into (`dmabuf.tracker`). */
  readonly tracker: { area: IoptArea; domain: IommuDomain }[];
}

/** `struct iopt_area`: an IOVA range of the IOAS backed by pages. */
export interface IoptArea {
  readonly iova: DmaAddr;
  readonly length: Bytes;
  readonly pages: IoptPagesDmabuf;
  readonly prot: number;
}

export interface IommufdOptions {
  /** The IOMMU unit of the devices that will be attached (default: the kernel's dma-iommu unit). */
  readonly unit?: IommuUnit;
  readonly timeline?: Timeline | null;
  /**
   * The hardware's drain of in-flight DMA on an IOTLB invalidation (VT-d's read/write drain): the
   * platform's seam; without it an unmap completes at once.
   */
  readonly drain?: (() => KTaskOp<void>) | null;
}

/**
 * Open /dev/iommu and allocate an IOAS with a paging domain (IOMMU_IOAS_ALLOC + IOMMU_HWPT_ALLOC).
 * @returns the context; ENOSPC when the unit has no free domain id. Precondition: an IOMMU.
 */
export function iommufdOpen(k: Kernel, o: IommufdOptions = {}): KResult<IommufdCtx> {
  const unit = o.unit ?? (k.dma.iommu as IommuDmaSetup | null)?.unit;
  if (!unit) throw new Error('iommufd: the machine has no IOMMU');
  const d = iommuDomainAlloc(unit, 'dma', { log: (l) => k.log.printk('warn', l) });
  if (!d.ok) return d;
  return ok({
    k,
    world: dmaBufWorldOf(k),
    unit,
    domain: d.value,
    globalDev: { name: 'iommu' },
    areas: [],
    timeline: o.timeline ?? null,
    drain: o.drain ?? null,
  });
}

/** IOMMU_DEVICE_ATTACH (via VFIO's cdev): `fn`'s DMA is translated by the IOAS's domain from now on. */
export function iommufdDeviceAttach(ictx: IommufdCtx, fn: PciFunction): KResult<void> {
  return iommuAttachDevice(ictx.domain, fn.name);
}

const revoked = (p: IoptPagesDmabuf): boolean => p.phys.len === 0n;

/**
 * `iopt_revoke_notify()`: take the range out of every domain, then mark the pages revoked. The unmap's
 * IOTLB sync waits for the invalidation (and, where the platform drains, for DMA in flight).
 */
function iopRevokeNotify(ictx: IommufdCtx, attach: DmaBufAttachment): KTaskOp<void> | undefined {
  const pages = attach.importerPriv as IoptPagesDmabuf;
  if (revoked(pages)) return undefined;
  for (const t of pages.tracker) iommuUnmap(t.domain, t.area.iova, t.area.length);
  pages.phys.len = 0n;
  note(ictx.timeline, 'iommufd', 'revoke: IOMMU mapping removed', `${pages.tracker.length} area(s)`);
  return ictx.drain?.() ?? undefined;
}

const revokeOps = (ictx: IommufdCtx): DmaBufAttachOps => {
  const op = (a: DmaBufAttachment) => iopRevokeNotify(ictx, a);
  return { allow_peer2peer: true, invalidate_mappings: op, move_notify: op };
};

/**
 * `iopt_map_dmabuf()`: attach, pin and learn the physical range under the resv lock.
 * @returns ok; the attach errors (EOPNOTSUPP, ENODEV ...), the pin error, or the interconnect's
 *   (EOPNOTSUPP for a non-VFIO dma-buf or more than one range, ENODEV while revoked).
 */
function* ioptMapDmabuf(ictx: IommufdCtx, pages: IoptPagesDmabuf, dmabuf: DmaBuf): KTaskOp<KResult<void>> {
  const a = yield* dmaBufDynamicAttach(dmabuf, ictx.globalDev, revokeOps(ictx), pages);
  if (!a.ok) return a;
  yield* dmaResvLock(dmabuf.resv, null);
  let r: KResult<PhysVec | undefined> = yield* dmaBufPin(a.value);
  if (r.ok) {
    r = vfioPciDmaBufIommufdMap(a.value);
    if (!r.ok) dmaBufUnpin(a.value);
  }
  dmaResvUnlock(dmabuf.resv);
  if (!r.ok) {
    yield* dmaBufDetach(dmabuf, a.value);
    return r;
  }
  pages.phys = { paddr: r.value!.paddr, len: r.value!.len };
  pages.attach = a.value;
  return ok(undefined);
}

const aligned = (v: bigint): boolean => (v & (PAGE_SIZE_N - 1n)) === 0n;

/**
 * IOMMU_IOAS_MAP_FILE of a dma-buf: map [start, start + length) of `dmabuf` at `iova` in the IOAS.
 * @returns the area; EINVAL (unaligned iova/start/length, zero length, beyond the dma-buf, more than
 *   MAX_NPFNS pages), the attach/pin/interconnect errors of iopt_map_dmabuf, or iommu_map's errno.
 * May sleep (resv lock).
 */
export function* iommufdIoasMapFile(
  ictx: IommufdCtx,
  dmabuf: DmaBuf,
  start: bigint,
  length: bigint,
  iova: DmaAddr,
  flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
): KTaskOp<KResult<IoptArea>> {
  if (length === 0n || !aligned(iova) || !aligned(start) || !aligned(length))
    return err('EINVAL', 'iova, start and length must be page aligned and length not 0');
  if (BigInt(dmabuf.sizeBytes) <= start + length - 1n || length / PAGE_SIZE_N >= MAX_NPFNS)
    return err('EINVAL', 'range beyond the dma-buf');
  const writable = (flags & IOMMU_IOAS_MAP_WRITEABLE) !== 0;
  const pages: IoptPagesDmabuf = {
    attach: null,
    phys: { paddr: 0n, len: 0n },
    start,
    length: bytes(length),
    writable,
    tracker: [],
  };
  getDmaBuf(dmabuf);
  const r = yield* ioptMapDmabuf(ictx, pages, dmabuf);
  if (!r.ok) {
    dmaBufPut(dmabuf);
    return r;
  }
  const prot =
    IOMMU_MMIO | ((flags & IOMMU_IOAS_MAP_READABLE) !== 0 ? IOMMU_READ : 0) | (writable ? IOMMU_WRITE : 0);
  const area: IoptArea = { iova, length: bytes(length), pages, prot };
  const m = ioptAreaFillDomain(area, ictx.domain);
  if (!m.ok) {
    yield* ioptReleasePages(pages);
    return m;
  }
  ictx.areas.push(area);
  note(
    ictx.timeline,
    'iommufd',
    'map',
    `IOVA 0x${iova.toString(16)} -> BAR 0x${(pages.phys.paddr + start).toString(16)}, ${length} bytes`,
  );
  return ok(area);
}

/** `iopt_area_fill_domain()` for dma-buf pages: map and track, or nothing while revoked. */
function ioptAreaFillDomain(area: IoptArea, domain: IommuDomain): KResult<void> {
  const pages = area.pages;
  if (revoked(pages)) return ok(undefined);
  const r = iommuMap(domain, area.iova, physAddr(pages.phys.paddr + pages.start), area.length, area.prot);
  if (r.ok) pages.tracker.push({ area, domain });
  return r;
}

/** `iopt_release_pages()` for dma-buf pages: unpin, detach, drop the reference. May sleep. */
function* ioptReleasePages(pages: IoptPagesDmabuf): KTaskOp<void> {
  const attach = pages.attach;
  if (attach === null) return;
  const dmabuf = attach.dmabuf;
  yield* dmaResvLock(dmabuf.resv, null);
  dmaBufUnpin(attach);
  dmaResvUnlock(dmabuf.resv);
  yield* dmaBufDetach(dmabuf, attach);
  dmaBufPut(dmabuf);
  pages.attach = null;
}

/** IOMMU_IOAS_UNMAP of an area: out of the domain (unless revoked already), then release. May sleep. */
export function* iommufdIoasUnmap(ictx: IommufdCtx, area: IoptArea): KTaskOp<void> {
  const i = ictx.areas.indexOf(area);
  if (i < 0) return;
  ictx.areas.splice(i, 1);
  for (const t of area.pages.tracker.splice(0)) iommuUnmap(t.domain, t.area.iova, t.area.length);
  yield* ioptReleasePages(area.pages);
}

/** Is the area still translated by the IOMMU (not revoked)? */
export const ioptAreaLive = (area: IoptArea): boolean =>
  !revoked(area.pages) && area.pages.tracker.length > 0;
