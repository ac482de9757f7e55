// The IOTLB gather of the generic IOMMU API (include/linux/iommu.h): unmapped ranges collected for one
// invalidation, synced when the caller asks (strict), when a page of another size or a disjoint range
// arrives, or never when the domain's flush queue does it (queued).

import { add64, U64_MASK } from '../../hw/addr.js';
import type { IommuDomain, IommuIotlbGather } from './iommu.js';

/** `iommu_iotlb_gather_init`: an empty gather (start = ULONG_MAX, not queued). */
export function iommuIotlbGatherInit(): IommuIotlbGather {
  return { start: U64_MASK, end: 0n, pgsize: 0n, queued: false };
}

/** `iommu_iotlb_gather_is_disjoint`: the new range neither overlaps nor touches the gathered one. */
export function iommuIotlbGatherIsDisjoint(g: IommuIotlbGather, iova: bigint, size: bigint): boolean {
  const end = add64(iova, size - 1n);
  return g.end !== 0n && (add64(end, 1n) < g.start || iova > add64(g.end, 1n));
}

/** `iommu_iotlb_gather_add_range`: widen the gathered range to cover [iova, iova + size). */
export function iommuIotlbGatherAddRange(g: IommuIotlbGather, iova: bigint, size: bigint): void {
  const end = add64(iova, size - 1n);
  if (g.start > iova) g.start = iova;
  if (g.end < end) g.end = end;
}

/**
 * `iommu_iotlb_gather_add_page`: gather one page; a page of another size, or one disjoint from the
 * gathered range, first syncs what is gathered.
 */
export function iommuIotlbGatherAddPage(
  d: IommuDomain,
  g: IommuIotlbGather,
  iova: bigint,
  size: bigint,
): void {
  if ((g.pgsize !== 0n && g.pgsize !== size) || iommuIotlbGatherIsDisjoint(g, iova, size))
    iommuIotlbSync(d, g);
  g.pgsize = size;
  iommuIotlbGatherAddRange(g, iova, size);
}

/** `iommu_iotlb_gather_queued`. */
export const iommuIotlbGatherQueued = (g: IommuIotlbGather | null): boolean => g?.queued === true;

/** `iommu_iotlb_sync`: invalidate what the gather holds, then empty it (queued flag included). */
export function iommuIotlbSync(d: IommuDomain, g: IommuIotlbGather): void {
  d.ops.iotlbSync?.(d, g);
  Object.assign(g, iommuIotlbGatherInit());
}

/** `iommu_flush_iotlb_all`: invalidate every IOTLB entry of the domain. */
export function iommuFlushIotlbAll(d: IommuDomain): void {
  d.ops.flushIotlbAll?.(d);
}
