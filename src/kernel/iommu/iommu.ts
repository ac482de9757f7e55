// The kernel's generic IOMMU API (drivers/iommu/iommu.c, include/linux/iommu.h), newest mainline:
// domains and their types, iommu_map / iommu_unmap / iommu_unmap_fast with an IOTLB gather,
// iommu_iotlb_sync, iommu_flush_iotlb_all, iommu_iova_to_phys, the page-size choice of iommu_pgsize()
// and iommu_map_sg.
//
// Consumer side (what dma-iommu calls) and implementer side (`IommuDomainOps`, what a driver fills in)
// meet only at the ops table. A consumer function checks its arguments, picks page sizes, and
// dispatches; the driver declares what it can do (`capabilities`, optional ops) and the core never asks
// which driver it holds. The driver over dmasim's simulated IOMMU is ./iommu-driver.ts.
//
// Invalidation: iommu_unmap() gathers the unmapped pages and syncs before returning (strict).
// iommu_unmap_fast() only gathers; the caller syncs later, or, with `gather.queued` (flush-queue
// domains), the driver gathers nothing and the flush queue's iommu_flush_iotlb_all() does the work.
// Until then the hardware IOTLB may still translate the unmapped IOVAs (see src/hw/iommu/iotlb.ts).
//
// 6.1 differences: __iommu_map checked "no map op / empty pgsize_bitmap" (-ENODEV) before "not a paging
// domain" (-EINVAL), and iommu_map_sg had no iommu_sync_map failure path; results are otherwise equal.

import {
  add64,
  type Bytes,
  bytes,
  type DmaAddr,
  dmaAddr,
  hex,
  hexPad,
  type PhysAddr,
  physAddr,
} from '../../hw/addr.js';
import { type Err, type Errno, err, type KResult, ok } from '../errno.js';
import {
  iommuFlushIotlbAll,
  iommuIotlbGatherAddPage,
  iommuIotlbGatherAddRange,
  iommuIotlbGatherInit,
  iommuIotlbGatherIsDisjoint,
  iommuIotlbGatherQueued,
  iommuIotlbSync,
} from './iommu-gather.js';
import { iommuMinPagesz, iommuPgsize } from './iommu-pgsize.js';

export {
  iommuFlushIotlbAll,
  iommuIotlbGatherAddPage,
  iommuIotlbGatherAddRange,
  iommuIotlbGatherInit,
  iommuIotlbGatherIsDisjoint,
  iommuIotlbGatherQueued,
  iommuIotlbSync,
  iommuMinPagesz,
  iommuPgsize,
};

/** IOMMU_* protection flags of include/linux/iommu.h. */
export const IOMMU_READ = 1 << 0;
export const IOMMU_WRITE = 1 << 1;
export const IOMMU_CACHE = 1 << 2;
export const IOMMU_NOEXEC = 1 << 3;
export const IOMMU_MMIO = 1 << 4;
export const IOMMU_PRIV = 1 << 5;

/**
 * IOMMU_DOMAIN_*: 'dma' translates with strict invalidation, 'dma-fq' with a flush queue (lazy);
 * both are paging domains (`__IOMMU_DOMAIN_PAGING`). 'identity' passes DMA through, 'blocked' stops it.
 */
export type IommuDomainType = 'identity' | 'dma' | 'dma-fq' | 'blocked';

/** What the driver can do (the answers of its `capable()` op, IOMMU_CAP_*). */
export interface IommuCapabilities {
  /** IOMMU_CAP_DEFERRED_FLUSH: lazy (flush-queue) invalidation is allowed on this IOMMU. */
  readonly deferredFlush: boolean;
  /** IOMMU_CAP_CACHE_COHERENCY. */
  readonly cacheCoherency: boolean;
  /** IOMMU_CAP_NOEXEC: IOMMU_NOEXEC is honoured. */
  readonly noexec: boolean;
}

/** `struct iommu_iotlb_gather`: pending invalidation; `end` is inclusive, 0 when empty. */
export interface IommuIotlbGather {
  start: bigint;
  end: bigint;
  pgsize: bigint;
  /** The flush queue will flush everything later: the driver need not gather pages. */
  queued: boolean;
}

export interface IommuDomainGeometry {
  readonly apertureStart: DmaAddr;
  readonly apertureEnd: DmaAddr;
  /** DMA outside the aperture is not possible. */
  readonly forceAperture: boolean;
}

export interface IommuDomain {
  /** Hardware domain id (ASID / domain id), unique per IOMMU. */
  readonly id: number;
  readonly type: IommuDomainType;
  readonly ops: IommuDomainOps;
  /** Page sizes the domain can map, one bit per size (`pgsize_bitmap`). */
  readonly pgsizeBitmap: bigint;
  readonly geometry: IommuDomainGeometry;
  /** Where the model's pr_err / WARN lines go ("iommu: ..."). */
  readonly log: (line: string) => void;
}

/** What `map_pages` reports: bytes mapped even when it fails part-way, and the error. */
export interface MapPagesResult {
  readonly mapped: Bytes;
  readonly error: Err | null;
}

/**
 * The implementer API (`struct iommu_domain_ops`). Ops a domain type does not need are absent
 * (identity and blocked domains have no map ops).
 */
export interface IommuDomainOps {
  readonly capabilities: IommuCapabilities;
  attachDev(domain: IommuDomain, dev: string): KResult<void>;
  mapPages?(
    domain: IommuDomain,
    iova: DmaAddr,
    paddr: PhysAddr,
    pgsize: Bytes,
    pgcount: number,
    prot: number,
  ): MapPagesResult;
  /** Returns the bytes unmapped (0 on failure); adds pages to `gather` unless it is queued. */
  unmapPages?(
    domain: IommuDomain,
    iova: DmaAddr,
    pgsize: Bytes,
    pgcount: number,
    gather: IommuIotlbGather,
  ): Bytes;
  /** Physical address for `iova`, 0 when not mapped. */
  iovaToPhys?(domain: IommuDomain, iova: DmaAddr): PhysAddr;
  iotlbSyncMap?(domain: IommuDomain, iova: DmaAddr, size: Bytes): KResult<void>;
  iotlbSync?(domain: IommuDomain, gather: IommuIotlbGather): void;
  flushIotlbAll?(domain: IommuDomain): void;
  free(domain: IommuDomain): void;
}

/** One entry of the list iommu_map_sg maps; `busAddress` entries (P2P bus addresses) are skipped. */
export interface IommuSgEntry {
  readonly phys: PhysAddr;
  readonly len: Bytes;
  readonly busAddress?: boolean;
}

/** `domain->type & __IOMMU_DOMAIN_PAGING`. */
export const iommuDomainIsPaging = (type: IommuDomainType): boolean => type === 'dma' || type === 'dma-fq';

/**
 * `iommu_map_nosync`: map [iova, iova + size) to paddr with the largest pages possible, without the
 * driver's post-map sync. On failure what was mapped is unmapped again.
 * @returns ok, or EINVAL (not a paging domain; iova, paddr or size not aligned to the smallest page:
 *   "unaligned: iova 0x%lx pa %pa size 0x%zx min_pagesz 0x%x"; driver refusal such as no permission),
 *   ENODEV (driver has no map op or no page sizes), ERANGE (beyond the address size), EEXIST (already
 *   mapped), or another errno from the driver.
 */
export function iommuMapNosync(
  d: IommuDomain,
  iova: DmaAddr,
  paddr: PhysAddr,
  size: Bytes,
  prot: number,
): KResult<void> {
  if (!iommuDomainIsPaging(d.type)) return err('EINVAL', `iommu_map on a ${d.type} domain`);
  const mapPages = d.ops.mapPages;
  if (!mapPages || d.pgsizeBitmap === 0n) {
    d.log('iommu: WARN: domain has no map_pages op or page sizes');
    return err('ENODEV', 'domain cannot map');
  }
  const min = iommuMinPagesz(d);
  if (((iova | paddr | size) & (min - 1n)) !== 0n) {
    const msg = `unaligned: iova ${hex(iova)} pa ${hexPad(paddr, 16)} size ${hex(size)} min_pagesz ${hex(min)}`;
    d.log(`iommu: ${msg}`);
    return err('EINVAL', msg);
  }
  let left = size as bigint;
  let cur = iova as bigint;
  let pa = paddr as bigint;
  let failure: Err | null = null;
  while (left > 0n) {
    const { pgsize, count } = iommuPgsize(d, cur, pa, left);
    const r = mapPages(d, dmaAddr(cur), physAddr(pa), pgsize, count, prot);
    left -= r.mapped;
    if (r.error) {
      failure = r.error;
      break;
    }
    if (r.mapped === 0n) throw new Error('iommu_map: driver mapped nothing and reported no error');
    cur = add64(cur, r.mapped);
    pa = add64(pa, r.mapped);
  }
  if (failure) {
    iommuUnmap(d, iova, bytes(size - left));
    return failure;
  }
  return ok(undefined);
}

/** `iommu_sync_map`: let the driver make new mappings visible (a no-op without `iotlbSyncMap`). */
export function iommuSyncMap(d: IommuDomain, iova: DmaAddr, size: Bytes): KResult<void> {
  return d.ops.iotlbSyncMap ? d.ops.iotlbSyncMap(d, iova, size) : ok(undefined);
}

/**
 * `iommu_map`: iommu_map_nosync then iommu_sync_map; a failed sync unmaps the range again.
 * @returns ok or the errno table of `iommuMapNosync`, or the driver's sync error.
 */
export function iommuMap(
  d: IommuDomain,
  iova: DmaAddr,
  paddr: PhysAddr,
  size: Bytes,
  prot: number,
): KResult<void> {
  const r = iommuMapNosync(d, iova, paddr, size, prot);
  if (!r.ok) return r;
  const s = iommuSyncMap(d, iova, size);
  if (!s.ok) iommuUnmap(d, iova, size);
  return s;
}

/** `__iommu_unmap`: unmap page by page until `size` is covered or an unmapped area stops it. */
function iommuUnmapInner(d: IommuDomain, iova: DmaAddr, size: Bytes, gather: IommuIotlbGather): Bytes {
  const unmapPages = d.ops.unmapPages;
  if (!unmapPages || d.pgsizeBitmap === 0n) {
    d.log('iommu: WARN: domain has no unmap_pages op or page sizes');
    return bytes(0);
  }
  if (!iommuDomainIsPaging(d.type)) return bytes(0);
  const min = iommuMinPagesz(d);
  if (((iova | size) & (min - 1n)) !== 0n) {
    d.log(`iommu: unaligned: iova ${hex(iova)} size ${hex(size)} min_pagesz ${hex(min)}`);
    return bytes(0);
  }
  let unmapped = 0n;
  let cur = iova as bigint;
  while (unmapped < size) {
    const { pgsize, count } = iommuPgsize(d, cur, cur, size - unmapped);
    const n = unmapPages(d, dmaAddr(cur), pgsize, count, gather);
    if (n === 0n) break;
    cur = add64(cur, n);
    unmapped += n;
  }
  return bytes(unmapped);
}

/**
 * `iommu_unmap`: unmap and invalidate the IOTLB before returning (strict).
 * @returns bytes unmapped: 0 for an unaligned range, a non-paging domain or nothing mapped; less than
 *   `size` when an unmapped hole stops it; possibly more when a block is larger than asked.
 */
export function iommuUnmap(d: IommuDomain, iova: DmaAddr, size: Bytes): Bytes {
  const gather = iommuIotlbGatherInit();
  const n = iommuUnmapInner(d, iova, size, gather);
  iommuIotlbSync(d, gather);
  return n;
}

/**
 * `iommu_unmap_fast`: unmap, leaving invalidation to the caller (`iommuIotlbSync(d, gather)`), or to
 * the flush queue when `gather.queued`. Until then stale IOTLB entries still translate.
 * @returns bytes unmapped, as `iommuUnmap`.
 */
export function iommuUnmapFast(d: IommuDomain, iova: DmaAddr, size: Bytes, gather: IommuIotlbGather): Bytes {
  return iommuUnmapInner(d, iova, size, gather);
}

/**
 * `iommu_map_sg`: map the entries back to back from `iova`, merging physically contiguous neighbours
 * into one iommu_map_nosync call and skipping bus-address entries, then sync once.
 * @returns bytes mapped, or the first errno of `iommuMapNosync` / the sync (all undone).
 */
export function iommuMapSg(
  d: IommuDomain,
  iova: DmaAddr,
  sg: readonly IommuSgEntry[],
  prot: number,
): KResult<Bytes> {
  let mapped = 0n;
  let runStart = 0n;
  let runLen = 0n;
  let failure: Err | null = null;
  // One pass more than there are entries, looking at the last one again, flushes the final run
  // exactly as the kernel's loop does.
  for (let i = 0; i <= sg.length && sg.length > 0; i++) {
    const e = sg[Math.min(i, sg.length - 1)]!;
    if (runLen !== 0n && e.phys !== add64(runStart, runLen)) {
      const r = iommuMapNosync(d, dmaAddr(add64(iova, mapped)), physAddr(runStart), bytes(runLen), prot);
      if (!r.ok) {
        failure = r;
        break;
      }
      mapped += runLen;
      runLen = 0n;
    }
    if (e.busAddress) continue;
    if (runLen !== 0n) runLen += e.len;
    else {
      runLen = e.len;
      runStart = e.phys;
    }
  }
  if (!failure) {
    const s = iommuSyncMap(d, iova, bytes(mapped));
    if (s.ok) return ok(bytes(mapped));
    failure = s;
  }
  iommuUnmap(d, iova, bytes(mapped));
  return failure;
}

/**
 * `iommu_iova_to_phys`: identity domains return the IOVA itself, blocked domains 0.
 * @returns the physical address, or 0 when nothing is mapped there.
 */
export function iommuIovaToPhys(d: IommuDomain, iova: DmaAddr): PhysAddr {
  if (d.type === 'identity') return physAddr(iova);
  if (d.type === 'blocked' || !d.ops.iovaToPhys) return physAddr(0);
  return d.ops.iovaToPhys(d, iova);
}

/**
 * `iommu_attach_device`: bind a device (by `pci_name()`) to the domain in the hardware.
 * @returns ok, or the driver's errno.
 */
export function iommuAttachDevice(d: IommuDomain, dev: string): KResult<void> {
  return d.ops.attachDev(d, dev);
}

/** `iommu_domain_free`. Precondition: no device attached. */
export function iommuDomainFree(d: IommuDomain): void {
  d.ops.free(d);
}

/** The errno names this API can return, for contract tests. */
export const IOMMU_MAP_ERRNOS: readonly Errno[] = ['EINVAL', 'ENODEV', 'ERANGE', 'EEXIST', 'ENOMEM'];
