// dma-direct for scatterlists, with P2PDMA per segment (kernel/dma/direct.c `dma_direct_map_sg()`,
// `dma_direct_unmap_sg()`, `dma_direct_sync_sg_for_*()`), and the `directDmaOps` table.
//
//   for each segment:  pci_p2pdma_state(page)
//     none              -> dma_direct_map_phys(sg_phys, length)        (error: -EIO, undo the prefix)
//     thru-host-bridge  -> the same: the CPU physical address crosses the host bridge
//     bus-addr          -> dma_address = phys + bus offset, flagged SG_DMA_BUS_ADDRESS, no mapping
//     not-supported     -> -EREMOTEIO, undo the prefix
//
// 6.16 to mid-2026 left THRU_HOST_BRIDGE segments without a DMA address (`break` where `fallthrough`
// was meant); fixed and backported in June 2026. The model runs the fixed code unless the context asks
// for the bug (`thruHostBridgeBreakBug`), and only on the newest profile (6.1 never had it).

import { bytes, dmaAddr } from '../../hw/addr.js';
import { err, type KResult, ok } from '../errno.js';
import {
  type Scatterlist,
  sgDmaIsBusAddress,
  sgDmaMarkBusAddress,
  sgDmaUnmarkBusAddress,
  sgNext,
  sgPhys,
} from '../lib/scatterlist.js';
import { type DmaDevice, devIsDmaCoherent } from './device.js';
import {
  dmaDirectAllRamMapped,
  dmaDirectGetRequiredMask,
  dmaDirectMapPhys,
  dmaDirectMaxMappingSize,
  dmaDirectNeedSync,
  dmaDirectSupported,
  dmaDirectSyncSingleForCpu,
  dmaDirectSyncSingleForDevice,
  dmaDirectUnmapPhys,
  dmaToPhys,
} from './direct.js';
import { DMA_ATTR_SKIP_CPU_SYNC, DMA_MAPPING_ERROR, type DmaDirection } from './dma-types.js';
import { type DmaMapOps, SIZE_MAX } from './map-ops.js';
import { newP2pdmaMapState, pciP2pdmaBusAddrMap, pciP2pdmaState } from './p2p-state.js';
import {
  archSyncDmaForCpu,
  archSyncDmaForDevice,
  swiotlbSyncForCpuDev,
  swiotlbSyncForDeviceDev,
} from './swiotlb-map.js';

/** `dma_direct_unmap_sg()`: unmap each segment; bus-address segments are only unflagged. */
export function dmaDirectUnmapSg(
  dev: DmaDevice,
  sgl: Scatterlist,
  nents: number,
  dir: DmaDirection,
  attrs: number,
): void {
  let sg: Scatterlist | null = sgl;
  for (let i = 0; i < nents && sg !== null; i++, sg = i < nents ? sgNext(sg) : null) {
    if (sgDmaIsBusAddress(sg)) sgDmaUnmarkBusAddress(sg);
    else dmaDirectUnmapPhys(dev, sg.dmaAddress, bytes(sg.dmaLength), dir, attrs);
  }
}

/**
 * `dma_direct_map_sg()`.
 * @returns nents; EIO when a segment cannot be mapped (DMA_MAPPING_ERROR); EREMOTEIO for P2P memory
 *   the device cannot reach. On error the segments mapped so far are unmapped (without CPU sync).
 */
export function dmaDirectMapSg(
  dev: DmaDevice,
  sgl: Scatterlist,
  nents: number,
  dir: DmaDirection,
  attrs: number,
): KResult<number> {
  const st = newP2pdmaMapState();
  const breakBug = dev.ctx.thruHostBridgeBreakBug && dev.ctx.version !== '6.1';
  let sg: Scatterlist = sgl;
  for (let i = 0; i < nents; i++) {
    if (i > 0) {
      const n = sgNext(sg);
      if (n === null) throw new Error('BUG: dma_direct_map_sg ran past the end of the list');
      sg = n;
    }
    if (sg.pfn === null) throw new Error('BUG: dma_map_sg of an entry without a page');
    const type = pciP2pdmaState(st, dev, sg.pfn);
    if (type === 'bus-addr') {
      sg.dmaAddress = dmaAddr(pciP2pdmaBusAddrMap(st.mem!, sgPhys(sg)));
      sg.dmaLength = sg.length;
      sgDmaMarkBusAddress(sg);
      continue;
    }
    if (type === 'none' || (type === 'thru-host-bridge' && !breakBug)) {
      sg.dmaAddress = dmaDirectMapPhys(dev, sgPhys(sg), bytes(sg.length), dir, attrs);
      if (sg.dmaAddress === DMA_MAPPING_ERROR) {
        dmaDirectUnmapSg(dev, sgl, i, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
        return err('EIO', `segment ${i} could not be mapped`);
      }
    } else if (type !== 'thru-host-bridge') {
      dmaDirectUnmapSg(dev, sgl, i, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
      return err('EREMOTEIO', `segment ${i}: P2PDMA memory the device cannot reach (${type})`);
    }
    sg.dmaLength = sg.length;
  }
  return ok(nents);
}

/** `dma_direct_sync_sg_for_device()`: per segment (bus-address segments have nothing to sync). */
export function dmaDirectSyncSgForDevice(
  dev: DmaDevice,
  sgl: Scatterlist,
  nents: number,
  dir: DmaDirection,
): void {
  let sg: Scatterlist | null = sgl;
  for (let i = 0; i < nents && sg !== null; i++, sg = i < nents ? sgNext(sg) : null) {
    if (sgDmaIsBusAddress(sg)) continue;
    swiotlbSyncForDeviceDev(dev, dmaToPhys(dev, sg.dmaAddress), bytes(sg.length), dir);
    if (!devIsDmaCoherent(dev)) archSyncDmaForDevice(dev);
  }
}

/** `dma_direct_sync_sg_for_cpu()`. */
export function dmaDirectSyncSgForCpu(
  dev: DmaDevice,
  sgl: Scatterlist,
  nents: number,
  dir: DmaDirection,
): void {
  let sg: Scatterlist | null = sgl;
  for (let i = 0; i < nents && sg !== null; i++, sg = i < nents ? sgNext(sg) : null) {
    if (sgDmaIsBusAddress(sg)) continue;
    if (!devIsDmaCoherent(dev)) archSyncDmaForCpu(dev);
    swiotlbSyncForCpuDev(dev, dmaToPhys(dev, sg.dmaAddress), bytes(sg.length), dir);
  }
}

/** dma-direct behind the implementer API. */
export const directDmaOps = {
  name: 'dma-direct',
  unmapOptional: true,
  pciP2pdmaSupported: true,
  iova: null,
  mapPhys: dmaDirectMapPhys,
  unmapPhys: dmaDirectUnmapPhys,
  mapSg: dmaDirectMapSg,
  unmapSg: dmaDirectUnmapSg,
  syncSingleForCpu: dmaDirectSyncSingleForCpu,
  syncSingleForDevice: dmaDirectSyncSingleForDevice,
  syncSgForCpu: dmaDirectSyncSgForCpu,
  syncSgForDevice: dmaDirectSyncSgForDevice,
  dmaSupported: dmaDirectSupported,
  getRequiredMask: dmaDirectGetRequiredMask,
  maxMappingSize: dmaDirectMaxMappingSize,
  optMappingSize: () => SIZE_MAX,
  getMergeBoundary: () => 0n,
  rangeMapLimited: (dev: DmaDevice) => !dmaDirectAllRamMapped(dev),
  needSync: dmaDirectNeedSync,
  initialSkipSync: devIsDmaCoherent,
} satisfies DmaMapOps;
