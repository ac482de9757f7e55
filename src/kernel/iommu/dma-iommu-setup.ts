// Setting devices up for dma-iommu: the IOMMU unit of the machine, one default domain per IOMMU group
// (type from iommu.passthrough / iommu.strict / CONFIG_IOMMU_DEFAULT_DMA_LAZY; untrusted devices always
// strict), `iommu_setup_dma_ops()` and `iommu_dma_init_domain()` with the IOVA reservations, and the
// `iommuDmaOps` table. Mirrors drivers/iommu/iommu.c (`iommu_get_def_domain_type()`) and
// drivers/iommu/dma-iommu.c (`iommu_dma_init_domain()`, `iova_reserve_iommu_regions()`).
//
//   IOVA space of a DMA domain (granule 4 KiB, start pfn 1: IOVA 0 is never handed out)
//   0 | usable ...  [host-bridge MEM windows, as bus addresses: reserved]  ... [0xfee00000 MSI: reserved]
//   so an IOVA never aliases a peer's BAR: P2P bus-address segments and IOVAs can share one list.

import { bytes } from '../../hw/addr.js';
import { IommuUnit } from '../../hw/iommu/iommu.js';
import { type DmaDevice, devIsDmaCoherent, devIsUntrusted } from '../dma/device.js';
import type { DmaContext, DmaIommuSetup } from '../dma/dma-context.js';
import { DMA_BIT_MASK } from '../dma/dma-types.js';
import { type DmaMapOps, SIZE_MAX } from '../dma/map-ops.js';
import { swiotlbMaxMappingSizeDev } from '../dma/swiotlb-map.js';
import {
  cookieOf,
  type IommuDmaCookie,
  iommuDmaMapPhys,
  iommuDmaSyncSingleForCpu,
  iommuDmaSyncSingleForDevice,
  iommuDmaUnmapPhys,
  newIommuDmaCookie,
} from './dma-iommu.js';
import { iommuDmaIovaOps } from './dma-iommu-iova.js';
import {
  iommuDmaMapSg,
  iommuDmaSyncSgForCpu,
  iommuDmaSyncSgForDevice,
  iommuDmaUnmapSg,
} from './dma-iommu-sg.js';
import { type FqQueueType, iommuDmaInitFq } from './flush-queue.js';
import {
  type IommuDomain,
  type IommuDomainType,
  iommuAttachDevice,
  iommuFlushIotlbAll,
  iommuMinPagesz,
} from './iommu.js';
import { iommuDomainAlloc } from './iommu-driver.js';
import { freeIovaFast, initIovaDomain, iovaDomainInitRcaches, iovaRcacheRange, reserveIova } from './iova.js';

/** dma-iommu behind the implementer API (newest: with the two-step IOVA API). */
export const iommuDmaOps = {
  name: 'dma-iommu',
  unmapOptional: false,
  pciP2pdmaSupported: true,
  iova: iommuDmaIovaOps,
  mapPhys: iommuDmaMapPhys,
  unmapPhys: iommuDmaUnmapPhys,
  mapSg: iommuDmaMapSg,
  unmapSg: iommuDmaUnmapSg,
  syncSingleForCpu: iommuDmaSyncSingleForCpu,
  syncSingleForDevice: iommuDmaSyncSingleForDevice,
  syncSgForCpu: iommuDmaSyncSgForCpu,
  syncSgForDevice: iommuDmaSyncSgForDevice,
  dmaSupported: () => true,
  getRequiredMask: () => DMA_BIT_MASK(32),
  maxMappingSize: (dev: DmaDevice) => (devIsUntrusted(dev) ? swiotlbMaxMappingSizeDev(dev) : SIZE_MAX),
  optMappingSize: () => iovaRcacheRange(),
  getMergeBoundary: (dev: DmaDevice) => BigInt(cookieOf(dev).granule - 1),
  rangeMapLimited: () => false,
  needSync: () => true,
  initialSkipSync: devIsDmaCoherent,
} satisfies DmaMapOps;

/** 6.1's `iommu_dma_ops`: the same, without the IOVA API (added in 6.16). */
export const iommuDmaOps61 = { ...iommuDmaOps, iova: null } satisfies DmaMapOps;

/** A reserved IOVA range [start, end] (inclusive), as bus addresses. */
export interface IovaReservation {
  readonly start: bigint;
  readonly end: bigint;
}

export interface IommuDmaSetupOptions {
  /** Host-bridge MEM windows of a device's host bridge, as bus addresses (`res - offset`). */
  readonly windowsOf?: ((dev: DmaDevice) => readonly IovaReservation[]) | undefined;
  /** IOMMUs whose flushes shadow page tables use one big queue (newest `shadow_on_flush`). */
  readonly shadowOnFlush?: boolean | undefined;
  /** IOTLB geometry of the unit (default 512 entries, 8 ways). */
  readonly iotlbEntries?: number | undefined;
}

/** The x86 IOMMU_RESV_MSI region (0xfee00000, 1 MiB) both Intel and AMD drivers report. */
export const X86_MSI_REGION: IovaReservation = { start: 0xfee0_0000n, end: 0xfeef_ffffn };

export interface IommuDmaSetup extends DmaIommuSetup {
  /** Default domain and cookie per IOMMU group. */
  readonly groups: Map<string, { readonly domain: IommuDomain; readonly cookie: IommuDmaCookie | null }>;
}

/** `iommu_get_def_domain_type()` + the boot options: the domain type for a device. */
function defDomainType(ctx: DmaContext, dev: DmaDevice): IommuDomainType {
  if (devIsUntrusted(dev)) return 'dma';
  if (ctx.iommuMode === 'passthrough') return 'identity';
  return ctx.iommuMode === 'strict' ? 'dma' : 'dma-fq';
}

/**
 * `iommu_dma_init_domain()` for the first device of a domain: the IOVA allocator (granule = smallest
 * page size, start pfn max(1, aperture start)), its per-CPU caches, the flush queue of a lazy domain
 * (falling back to strict if the IOMMU cannot defer flushes), and the reservations.
 */
function iommuDmaInitDomain(
  ctx: DmaContext,
  dev: DmaDevice,
  domain: IommuDomain,
  o: IommuDmaSetupOptions,
): IommuDmaCookie {
  const granule = iommuMinPagesz(domain);
  const shift = Number(granule).toString(2).length - 1;
  const basePfn = Math.max(1, Number(domain.geometry.apertureStart >> BigInt(shift)));
  const iovad = initIovaDomain(bytes(granule), basePfn, { version: ctx.version, scheduler: ctx.engine });
  const rc = iovaDomainInitRcaches(iovad, ctx.nrCpus);
  if (!rc.ok) throw new Error(`iova_domain_init_rcaches: ${rc.detail}`);
  const cookie = newIommuDmaCookie(domain, iovad, Number(granule));
  if (domain.type === 'dma-fq') {
    if (domain.ops.capabilities.deferredFlush) {
      const type: FqQueueType = o.shadowOnFlush && ctx.version !== '6.1' ? 'single' : 'per-cpu';
      cookie.fq = iommuDmaInitFq({
        type,
        nrCpus: ctx.nrCpus,
        flushIotlbAll: () => iommuFlushIotlbAll(domain),
        freeIova: (pfn, pages, cpu) => freeIovaFast(iovad, pfn, pages, cpu),
        scheduler: ctx.engine,
      });
    } else (domain as { type: IommuDomainType }).type = 'dma';
  }
  const resv = [...(o.windowsOf?.(dev) ?? []), X86_MSI_REGION];
  for (const r of resv) {
    const r2 = reserveIova(iovad, Number(r.start >> BigInt(shift)), Number(r.end >> BigInt(shift)));
    if (!r2.ok) ctx.log.printk('warn', `iommu: failed to reserve IOVA [${r.start}-${r.end}]`);
  }
  return cookie;
}

/**
 * Attach the machine's IOMMU to a DMA context: devices probed afterwards get their group's default
 * domain, and dma-iommu when it is a DMA domain (identity domains keep dma-direct).
 */
export function iommuDmaSetup(ctx: DmaContext, o: IommuDmaSetupOptions = {}): IommuDmaSetup {
  const entries = o.iotlbEntries ?? 512;
  const unit = new IommuUnit({ name: 'dmar0', iotlb: { entries, ways: Math.min(8, entries) } });
  const groups: IommuDmaSetup['groups'] = new Map();
  const setup: IommuDmaSetup = {
    unit,
    groups,
    probe(dev: DmaDevice): void {
      const type = defDomainType(ctx, dev);
      const key = dev.fn.iommuGroup !== null ? `group${dev.fn.iommuGroup}` : `dev:${dev.name}`;
      let g = groups.get(key);
      if (!g) {
        const d = iommuDomainAlloc(unit, type, { log: (l) => ctx.log.printk('warn', l) });
        if (!d.ok) throw new Error(`iommu: ${d.detail}`);
        const paging = type === 'dma' || type === 'dma-fq';
        g = { domain: d.value, cookie: paging ? iommuDmaInitDomain(ctx, dev, d.value, o) : null };
        groups.set(key, g);
      }
      const a = iommuAttachDevice(g.domain, dev.name);
      if (!a.ok) throw new Error(`iommu: attach ${dev.name}: ${a.detail}`);
      if (g.cookie === null) return;
      dev.iommu = { domain: g.domain, cookie: g.cookie, pci32bitWorkaround: !ctx.opts.forcedac };
      dev.ops = ctx.version === '6.1' ? iommuDmaOps61 : iommuDmaOps;
    },
  };
  ctx.iommu = setup;
  return setup;
}
