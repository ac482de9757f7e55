// The per-call P2PDMA state the DMA implementations keep while walking a scatterlist:
// `struct pci_p2pdma_map_state` and `pci_p2pdma_state()` (include/linux/pci-p2pdma.h, newest; 6.1's
// `pci_p2pdma_map_segment()` keyed the same cache on the pgmap). Consecutive pages of one provider
// reuse the map type; a page of another provider looks it up again (verbosely the first time per
// client, as the provider's map-type cache does).

import { add64 } from '../../hw/addr.js';
import type { P2pdmaMapType } from '../pci/p2pdma.js';
import type { DmaDevice } from './device.js';
import type { DmaP2pProvider } from './dma-context.js';

/** `struct pci_p2pdma_map_state`. */
export interface P2pdmaMapState {
  /** `mem`: the provider of the last P2P page seen. */
  mem: DmaP2pProvider | null;
  /** `map`: its map type for the mapping device. */
  map: P2pdmaMapType;
}

export const newP2pdmaMapState = (): P2pdmaMapState => ({ mem: null, map: 'unknown' });

/**
 * `pci_p2pdma_state()`: 'none' for a page that is not P2PDMA memory; otherwise the map type of its
 * provider for `dev`, refreshed when the provider changes.
 */
export function pciP2pdmaState(st: P2pdmaMapState, dev: DmaDevice, pfn: number): P2pdmaMapType {
  const prov = dev.ctx.p2p.providerOfPfn(pfn);
  if (prov === null) return 'none';
  if (st.mem !== prov) {
    st.mem = prov;
    st.map = dev.ctx.p2p.mapType(prov, dev.fn);
  }
  return st.map;
}

/** `pci_p2pdma_bus_addr_map()`: the bus address of a CPU physical address of the provider's BAR. */
export function pciP2pdmaBusAddrMap(prov: DmaP2pProvider, paddr: bigint): bigint {
  return add64(paddr, prov.busOffset);
}
