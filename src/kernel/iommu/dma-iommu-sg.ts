// dma-iommu for scatterlists (drivers/iommu/dma-iommu.c `iommu_dma_map_sg()`, `__finalise_sg()`,
// `__invalidate_sg()`, `iommu_dma_unmap_sg()`, the sg syncs): the whole list gets ONE contiguous IOVA
// allocation, each segment padded to the IOVA granule (and to the segment boundary), and the output
// segments are re-merged where the IOVA is contiguous.
//
//   in:   [seg0 off 0x200 len 0x600] [seg1 len 0x1000] [P2P bus-addr seg] [seg3 ...]
//   pass 1: stash the granule offset in dma_address and the length in dma_length, align offset down
//           and length up; bus-address segments get their bus address and the flag, no IOVA
//   alloc:  one IOVA range for the sum;  iommu_map_sg() skips flagged segments
//   pass 2 (__finalise_sg): restore offsets/lengths, write output segments, merging contiguous ones
//
// Untrusted devices take the per-segment swiotlb path instead (`iommu_dma_map_sg_swiotlb()`, the list
// marked SG_DMA_SWIOTLB). Newest quirk kept: a BUS_ADDR segment's DMA length is taken from the list
// head (`sg_dma_len(s) = sg->length`); 6.1's `pci_p2pdma_map_segment()` used the segment's own.

import { bytes, dmaAddr } from '../../hw/addr.js';
import type { DmaDevice } from '../dma/device.js';
import { devIsDmaCoherent, dmaGetMask, dmaGetMaxSegSize, dmaGetSegBoundary } from '../dma/device.js';
import { DMA_ATTR_SKIP_CPU_SYNC, DMA_MAPPING_ERROR, type DmaDirection } from '../dma/dma-types.js';
import { newP2pdmaMapState, pciP2pdmaBusAddrMap, pciP2pdmaState } from '../dma/p2p-state.js';
import { archSyncDmaForCpu, archSyncDmaForDevice } from '../dma/swiotlb-map.js';
import { err, type KResult, ok } from '../errno.js';
import {
  type Scatterlist,
  sgDmaIsBusAddress,
  sgDmaIsSwiotlb,
  sgDmaMarkBusAddress,
  sgDmaMarkSwiotlb,
  sgDmaUnmarkBusAddress,
  sgNext,
  sgPhys,
} from '../lib/scatterlist.js';
import {
  cookieOf,
  devUseSwiotlb,
  dmaInfoToProt,
  iommuDmaAllocIova,
  iommuDmaFreeIova,
  iommuDmaMapPhys,
  iommuDmaSyncSingleForCpu,
  iommuDmaSyncSingleForDevice,
  iommuDmaUnmapPhys,
  iommuDmaUnmapRange,
} from './dma-iommu.js';
import { type IommuSgEntry, iommuMapSg } from './iommu.js';

/** The entries of a list, `n` of them (for_each_sg into an array: the model walks lists more than once). */
export function sgArray(sgl: Scatterlist, n: number): Scatterlist[] {
  const out: Scatterlist[] = [];
  let s: Scatterlist | null = sgl;
  for (let i = 0; i < n && s !== null; i++) {
    out.push(s);
    s = i + 1 < n ? sgNext(s) : null;
  }
  return out;
}

function unmapSgSwiotlb(
  dev: DmaDevice,
  sg: Scatterlist[],
  n: number,
  dir: DmaDirection,
  attrs: number,
): void {
  for (let i = 0; i < n; i++) iommuDmaUnmapPhys(dev, sg[i]!.dmaAddress, bytes(sg[i]!.dmaLength), dir, attrs);
}

/** `iommu_dma_map_sg_swiotlb()`: each segment on its own (bouncing where unaligned). @returns nents or EIO. */
function mapSgSwiotlb(dev: DmaDevice, sg: Scatterlist[], dir: DmaDirection, attrs: number): KResult<number> {
  sgDmaMarkSwiotlb(sg[0]!);
  for (let i = 0; i < sg.length; i++) {
    const s = sg[i]!;
    s.dmaAddress = iommuDmaMapPhys(dev, sgPhys(s), bytes(s.length), dir, attrs);
    if (s.dmaAddress === DMA_MAPPING_ERROR) {
      unmapSgSwiotlb(dev, sg, i, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
      return err('EIO', `segment ${i} could not be mapped`);
    }
    s.dmaLength = s.length;
  }
  return ok(sg.length);
}

/** `__finalise_sg()`: restore the CPU fields, write the output segments. @returns their count. */
function finaliseSg(dev: DmaDevice, sg: Scatterlist[], dmaAddrIn: bigint): number {
  const segMask = dmaGetSegBoundary(dev);
  const maxLen = dmaGetMaxSegSize(dev);
  let dma = dmaAddrIn;
  let cur = 0;
  let curLen = 0;
  let count = 0;
  for (let i = 0; i < sg.length; i++) {
    const s = sg[i]!;
    const sDma = s.dmaAddress;
    const sIovaOff = Number(s.dmaAddress & 0xffff_ffffn);
    const sLength = s.dmaLength;
    const sIovaLen = s.length;
    s.dmaAddress = DMA_MAPPING_ERROR;
    s.dmaLength = 0;
    if (sgDmaIsBusAddress(s)) {
      if (i > 0) cur++;
      sgDmaUnmarkBusAddress(s);
      sg[cur]!.dmaAddress = sDma;
      sg[cur]!.dmaLength = sLength;
      sgDmaMarkBusAddress(sg[cur]!);
      count++;
      curLen = 0;
      continue;
    }
    s.offset += sIovaOff;
    s.length = sLength;
    if (curLen !== 0 && sIovaOff === 0 && (dma & segMask) !== 0n && maxLen - curLen >= sLength) {
      curLen += sLength;
    } else {
      if (i > 0) cur++;
      curLen = sLength;
      count++;
      sg[cur]!.dmaAddress = dmaAddr(dma + BigInt(sIovaOff));
    }
    sg[cur]!.dmaLength = curLen;
    dma += BigInt(sIovaLen);
    if (sLength + sIovaOff < sIovaLen) curLen = 0;
  }
  return count;
}

/** `__invalidate_sg()`: undo pass 1 after a failure; every DMA field is invalid afterwards. */
function invalidateSg(sg: Scatterlist[]): void {
  for (const s of sg) {
    if (sgDmaIsBusAddress(s)) sgDmaUnmarkBusAddress(s);
    else {
      if (s.dmaAddress !== DMA_MAPPING_ERROR) s.offset += Number(s.dmaAddress);
      if (s.dmaLength !== 0) s.length = s.dmaLength;
    }
    s.dmaAddress = DMA_MAPPING_ERROR;
    s.dmaLength = 0;
  }
}

/**
 * `iommu_dma_map_sg()`.
 * @returns the output segment count; EREMOTEIO (P2P memory the device cannot reach), ENOMEM (no IOVA
 *   space, or the IOMMU ran out of memory), EINVAL (any other failure, e.g. a short map); EIO from the
 *   swiotlb path. On failure the list is restored and nothing stays mapped.
 */
export function iommuDmaMapSg(
  dev: DmaDevice,
  sgl: Scatterlist,
  nents: number,
  dir: DmaDirection,
  attrs: number,
): KResult<number> {
  const c = cookieOf(dev);
  const sg = sgArray(sgl, nents);
  if (devUseSwiotlb(dev)) return mapSgSwiotlb(dev, sg, dir, attrs);
  if ((attrs & DMA_ATTR_SKIP_CPU_SYNC) === 0) iommuDmaSyncSgForDevice(dev, sgl, nents, dir);
  const prot = dmaInfoToProt(dir, devIsDmaCoherent(dev), attrs);
  const mask = dmaGetSegBoundary(dev);
  const st = newP2pdmaMapState();
  const g = BigInt(c.granule - 1);
  let iovaLen = 0n;
  let prev: Scatterlist | null = null;
  for (const s of sg) {
    if (s.pfn === null) throw new Error('BUG: iommu_dma_map_sg of an entry without a page');
    const sIovaOff = s.offset & (c.granule - 1);
    const type = pciP2pdmaState(st, dev, s.pfn);
    if (type === 'bus-addr') {
      s.dmaAddress = dmaAddr(pciP2pdmaBusAddrMap(st.mem!, sgPhys(s)));
      s.dmaLength = dev.ctx.version === '6.1' ? s.length : sgl.length;
      sgDmaMarkBusAddress(s);
      continue;
    }
    if (type !== 'none' && type !== 'thru-host-bridge') {
      invalidateSg(sg);
      return err('EREMOTEIO', `P2PDMA memory the device cannot reach (${type})`);
    }
    const padLen = (mask - iovaLen + 1n) & mask;
    s.dmaAddress = dmaAddr(sIovaOff);
    s.dmaLength = s.length;
    s.offset -= sIovaOff;
    const sLength = (BigInt(s.length + sIovaOff) + g) & ~g;
    s.length = Number(sLength);
    if (padLen !== 0n && padLen < sLength - 1n && prev !== null) {
      prev.length += Number(padLen);
      iovaLen += padLen;
    }
    iovaLen += sLength;
    prev = s;
  }
  if (iovaLen === 0n) return ok(finaliseSg(dev, sg, 0n));
  const iova = iommuDmaAllocIova(dev, iovaLen, dmaGetMask(dev));
  if (iova === 0n) {
    invalidateSg(sg);
    return err('ENOMEM', `no IOVA space for ${iovaLen} bytes`);
  }
  const entries: IommuSgEntry[] = sg.map((s) => ({
    phys: sgPhys(s),
    len: bytes(s.length),
    busAddress: sgDmaIsBusAddress(s),
  }));
  const r = iommuMapSg(c.domain, dmaAddr(iova), entries, prot);
  if (!r.ok || r.value < iovaLen) {
    iommuDmaFreeIova(dev, iova, iovaLen, null);
    invalidateSg(sg);
    const errno = !r.ok && r.errno === 'ENOMEM' ? 'ENOMEM' : 'EINVAL';
    return err(errno, r.ok ? `short map: ${r.value} of ${iovaLen} bytes` : r.detail);
  }
  return ok(finaliseSg(dev, sg, iova));
}

/** `iommu_dma_unmap_sg()`: one unmap from the first to the end of the last IOVA segment. */
export function iommuDmaUnmapSg(
  dev: DmaDevice,
  sgl: Scatterlist,
  nents: number,
  dir: DmaDirection,
  attrs: number,
): void {
  const sg = sgArray(sgl, nents);
  if (sgDmaIsSwiotlb(sgl)) {
    unmapSgSwiotlb(dev, sg, sg.length, dir, attrs);
    return;
  }
  if ((attrs & DMA_ATTR_SKIP_CPU_SYNC) === 0) iommuDmaSyncSgForCpu(dev, sgl, nents, dir);
  let start = 0n;
  let end = 0n;
  let i = 0;
  for (; i < sg.length; i++) {
    const s = sg[i]!;
    if (sgDmaIsBusAddress(s)) {
      sgDmaUnmarkBusAddress(s);
      continue;
    }
    if (s.dmaLength === 0) break;
    start = s.dmaAddress;
    break;
  }
  for (; i < sg.length; i++) {
    const s = sg[i]!;
    if (sgDmaIsBusAddress(s)) {
      sgDmaUnmarkBusAddress(s);
      continue;
    }
    if (s.dmaLength === 0) break;
    end = s.dmaAddress + BigInt(s.dmaLength);
  }
  if (end !== 0n) iommuDmaUnmapRange(dev, start, end - start);
}

/** `iommu_dma_sync_sg_for_cpu()`: per segment through swiotlb, or cache maintenance. */
export function iommuDmaSyncSgForCpu(
  dev: DmaDevice,
  sgl: Scatterlist,
  nents: number,
  dir: DmaDirection,
): void {
  if (sgDmaIsSwiotlb(sgl)) {
    for (const s of sgArray(sgl, nents)) iommuDmaSyncSingleForCpu(dev, s.dmaAddress, bytes(s.length), dir);
  } else if (!devIsDmaCoherent(dev)) for (let i = 0; i < nents; i++) archSyncDmaForCpu(dev);
}

/** `iommu_dma_sync_sg_for_device()`. */
export function iommuDmaSyncSgForDevice(
  dev: DmaDevice,
  sgl: Scatterlist,
  nents: number,
  dir: DmaDirection,
): void {
  if (sgDmaIsSwiotlb(sgl)) {
    for (const s of sgArray(sgl, nents)) iommuDmaSyncSingleForDevice(dev, s.dmaAddress, bytes(s.length), dir);
  } else if (!devIsDmaCoherent(dev)) for (let i = 0; i < nents; i++) archSyncDmaForDevice(dev);
}
