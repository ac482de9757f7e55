// The DMA-side P2PDMA lookups (drivers/pci/p2pdma.c, include/linux/pci-p2pdma.h): is this page P2P
// memory, which provider owns it, how may a client reach it (pci_p2pdma_map_type with its per-provider
// cache), and what bus address does a CPU physical address of it have.
//
//   dma_map_sg(client, page) --is_pci_p2pdma_page--> pagemap --provider--> map type (cached per client)
//        BUS_ADDR:         dma address = phys + provider->bus_offset (no IOMMU mapping)
//        THRU_HOST_BRIDGE: mapped like RAM;  NOT_SUPPORTED: -EREMOTEIO;  NONE: not P2P memory
//
// The first lookup for a (provider, client) pair computes the decision verbosely, so the ACS and
// whitelist warnings appear on the first DMA map, as in the kernel; later lookups hit the cache.

import { type DmaAddr, dmaAddr, type PhysAddr } from '../../hw/addr.js';
import { mapTypesIdx } from '../../hw/bdf.js';
import type { PciFunction } from '../../hw/pci.js';
import type { Kernel } from '../kernel.js';
import type { DevPagemap } from '../mm/memremap.js';
import type { Page } from '../mm/page.js';
import { calcMapTypeAndDist, type P2pdmaMapType } from './p2pdma.js';
import { type P2pdmaProvider, pciP2pdmaOf } from './p2pdma-provider.js';

/** `is_pci_p2pdma_page()`: a ZONE_DEVICE page of a MEMORY_DEVICE_PCI_P2PDMA pagemap. */
export const isPciP2pdmaPage = (page: Page): boolean =>
  page.pgmap !== null && page.pgmap.type === 'pci-p2pdma';

const isPgmap = (x: P2pdmaProvider | DevPagemap): x is DevPagemap => 'firstPfn' in x;

/**
 * `pci_p2pdma_map_type()`: 6.1 takes the page's pagemap, newest its provider; both key the cache by
 * the owning function. `dev` null stands for a device that is not PCI.
 * @returns 'not-supported' when the provider has no p2pdma state (unbound) or the client is not PCI;
 *   else the cached type, computing it verbosely (and caching it) on the first lookup.
 */
export function pciP2pdmaMapType(
  k: Kernel,
  providerOrPgmap: P2pdmaProvider | DevPagemap,
  dev: PciFunction | null,
): P2pdmaMapType {
  const provider = isPgmap(providerOrPgmap) ? providerOrPgmap.provider : providerOrPgmap;
  if (provider === null) throw new Error('BUG: pci_p2pdma_map_type on a pagemap that is not P2PDMA');
  const st = pciP2pdmaOf(k, provider.owner);
  if (st === null || dev === null) return 'not-supported';
  const cached = st.mapTypes.get(mapTypesIdx(dev.addr)) ?? 'unknown';
  if (cached !== 'unknown') return cached;
  return calcMapTypeAndDist(k.p2p, provider.owner, dev, true).mapType;
}

/** `struct pci_p2pdma_map_state`: the provider (newest) or pagemap (6.1) last seen, its type and offset. */
export interface PciP2pdmaMapState {
  mem: P2pdmaProvider | null;
  pgmap: DevPagemap | null;
  map: P2pdmaMapType;
  busOff: bigint;
}

export const newP2pdmaMapState = (): PciP2pdmaMapState => ({
  mem: null,
  pgmap: null,
  map: 'unknown',
  busOff: 0n,
});

/**
 * `pci_p2pdma_state()` (newest; 6.1's pci_p2pdma_map_segment() does the same update keyed by pagemap):
 * for a P2P page, refresh `state` when the page belongs to another provider (6.1: another pagemap) and
 * return its map type; for any other page return 'none' (`PCI_P2PDMA_MAP_NONE`, newest numbering).
 */
export function pciP2pdmaState(
  k: Kernel,
  state: PciP2pdmaMapState,
  dev: PciFunction | null,
  page: Page,
): P2pdmaMapType {
  const pgmap = page.pgmap;
  if (pgmap === null || pgmap.type !== 'pci-p2pdma' || pgmap.provider === null) return 'none';
  const same = k.version === '6.1' ? state.pgmap === pgmap : state.mem === pgmap.provider;
  if (!same) {
    state.pgmap = pgmap;
    state.mem = pgmap.provider;
    state.busOff = pgmap.provider.busOffset;
    state.map = pciP2pdmaMapType(k, pgmap.provider, dev);
  }
  return state.map;
}

/** `pci_p2pdma_bus_addr_map()`: the bus address the peer uses for CPU physical `paddr` (u64 wrap). */
export const pciP2pdmaBusAddrMap = (provider: P2pdmaProvider, paddr: PhysAddr): DmaAddr =>
  dmaAddr(paddr + provider.busOffset);

/** The seam the DMA layer uses (structurally `DmaP2pLookup` of src/kernel/dma/dma-context.ts). */
export interface P2pdmaDmaLookup {
  /** The provider of the P2P page at `pfn`, or null (not P2P memory, or no struct page). Allocation-free. */
  providerOfPfn(pfn: number): P2pdmaProvider | null;
  mapType(provider: P2pdmaProvider, client: PciFunction): P2pdmaMapType;
}

/** The DMA layer's view of P2PDMA on this kernel. */
export function p2pdmaDmaLookup(k: Kernel): P2pdmaDmaLookup {
  const table = k.mm.pgmaps;
  return {
    providerOfPfn(pfn) {
      const p = table.lookup(pfn);
      return p !== null && p.type === 'pci-p2pdma' ? p.provider : null;
    },
    mapType: (provider, client) => pciP2pdmaMapType(k, provider, client),
  };
}
