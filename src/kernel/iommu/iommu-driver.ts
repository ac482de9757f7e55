// The IOMMU driver for dmasim's simulated IOMMU unit (src/hw/iommu): the `IommuDomainOps` the generic
// API dispatches to. It plays the part drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c plays over
// io-pgtable-arm: map/unmap go to the domain's page table, unmapped leaves are added to the IOTLB gather
// page by page (unless the gather is queued for a flush queue), iotlb_sync invalidates the gathered range,
// flush_iotlb_all invalidates the whole domain, and deferred flush is supported.

import { bytes, dmaAddr, physAddr } from '../../hw/addr.js';
import type { HwDomainType, IommuUnit } from '../../hw/iommu/iommu.js';
import { PT_PGSIZE_BITMAP, type PteProt } from '../../hw/iommu/page-table.js';
import { err, type KResult, ok } from '../errno.js';
import {
  IOMMU_NOEXEC,
  IOMMU_READ,
  IOMMU_WRITE,
  type IommuDomain,
  type IommuDomainOps,
  type IommuDomainType,
  iommuIotlbGatherAddPage,
  iommuIotlbGatherQueued,
} from './iommu.js';

/** IOMMU_* flags to page-table permissions (stage-2 style: read and write are independent). */
export function iommuProtToPte(prot: number): PteProt {
  return {
    read: (prot & IOMMU_READ) !== 0,
    write: (prot & IOMMU_WRITE) !== 0,
    noexec: (prot & IOMMU_NOEXEC) !== 0,
  };
}

const hwType = (t: IommuDomainType): HwDomainType =>
  t === 'identity' ? 'identity' : t === 'blocked' ? 'blocked' : 'paging';

const opsByUnit = new WeakMap<IommuUnit, IommuDomainOps>();

/** The ops of one IOMMU unit (one object per unit, shared by its domains). */
export function iommuDriverOps(unit: IommuUnit): IommuDomainOps {
  const cached = opsByUnit.get(unit);
  if (cached) return cached;
  const ops = {
    capabilities: { deferredFlush: true, cacheCoherency: true, noexec: true },
    attachDev(d: IommuDomain, dev: string): KResult<void> {
      unit.attach(dev, d.id);
      return ok(undefined);
    },
    mapPages(d, iova, paddr, pgsize, pgcount, prot) {
      const r = unit.map(d.id, iova, paddr, pgsize, pgcount, iommuProtToPte(prot));
      if (r.warning) d.log(`iommu: WARN: ${r.warning}`);
      const error = r.errno ? err(r.errno, r.warning ?? `map_pages failed at ${iova.toString(16)}`) : null;
      return { mapped: bytes(r.mappedBytes), error };
    },
    unmapPages(d, iova, pgsize, pgcount, gather) {
      const r = unit.unmap(d.id, iova, pgsize, pgcount);
      if (r.warning) d.log(`iommu: WARN: ${r.warning}`);
      if (!iommuIotlbGatherQueued(gather)) {
        for (let j = 0; j < r.pages; j++)
          iommuIotlbGatherAddPage(d, gather, iova + BigInt(j) * pgsize, pgsize);
      }
      return bytes(r.unmappedBytes);
    },
    iovaToPhys: (d, iova) => physAddr(unit.iovaToPhys(d.id, iova)),
    iotlbSync(d, gather) {
      // Nothing gathered (or queued): nothing to invalidate.
      if (gather.pgsize === 0n) return;
      unit.invalidateRange(d.id, gather.start, gather.end - gather.start + 1n);
    },
    flushIotlbAll(d) {
      unit.invalidateDomain(d.id);
    },
    free(d) {
      unit.freeDomain(d.id);
    },
  } satisfies IommuDomainOps;
  opsByUnit.set(unit, ops);
  return ops;
}

export interface IommuDomainAllocOptions {
  /** Sink for pr_err / WARN lines; dropped when absent. */
  readonly log?: (line: string) => void;
}

/**
 * Allocate a domain of `type` on `unit` (`iommu_domain_alloc` + the driver's domain_alloc/finalise):
 * a paging domain gets a page table with 4K/2M/1G pages and the unit's full input range as aperture.
 * @returns the domain, or ENOSPC when the unit has no free domain id.
 */
export function iommuDomainAlloc(
  unit: IommuUnit,
  type: IommuDomainType,
  opts: IommuDomainAllocOptions = {},
): KResult<IommuDomain> {
  const id = unit.allocDomain(hwType(type));
  if (id === null) return err('ENOSPC', `${unit.name}: no free domain id`);
  const paging = type === 'dma' || type === 'dma-fq';
  const apertureEnd = dmaAddr(paging ? (1n << BigInt(unit.ias)) - 1n : 0n);
  return ok({
    id,
    type,
    ops: iommuDriverOps(unit),
    pgsizeBitmap: paging ? PT_PGSIZE_BITMAP : 0n,
    geometry: { apertureStart: dmaAddr(0), apertureEnd, forceAperture: paging },
    log: opts.log ?? (() => {}),
  });
}
