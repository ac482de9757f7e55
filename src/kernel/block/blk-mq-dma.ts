// Mapping a block request for DMA without a scatterlist (block/blk-mq-dma.c, include/linux/blk-mq-dma.h,
// 6.17+): the driver asks for one DMA range after another and writes each straight into its
// descriptors (NVMe PRPs or SGL entries).
//
//   blk_rq_dma_map_iter_start(req, dev, state, iter)
//     first physical segment (bvecs merged while contiguous, within the max segment size)
//     P2P state of its page: BUS_ADDR         -> iter.addr = bus address; every later segment too
//                            NOT_SUPPORTED    -> iter.status = BLK_STS_INVAL, false  (user: -EINVAL)
//                            THRU_HOST_BRIDGE -> mapped like RAM, with DMA_ATTR_MMIO
//     IOVA possible ((virt_boundary + 1) & merge boundary == 0) and dma_iova_try_alloc(payload):
//        link every segment back to back, one dma_iova_sync -> ONE range [state.addr, payload)
//        (a link error ends the linking; only a sync error is reported, as in the kernel)
//     else dma_map_phys() of the segment (error -> BLK_STS_RESOURCE)
//   blk_rq_dma_map_iter_next: the next segment, bus-mapped or dma_map_phys()'d
//   blk_rq_dma_unmap: BUS_ADDR -> nothing; IOVA -> dma_iova_destroy(); else the driver unmaps
//     each segment unless dma_need_unmap() says it need not

import {
  type Bytes,
  bytes,
  type DmaAddr,
  dmaAddr,
  PAGE_SHIFT,
  type PhysAddr,
  physAddr,
} from '../../hw/addr.js';
import type { DmaDevice } from '../dma/device.js';
import { DMA_ATTR_MMIO, DMA_FROM_DEVICE, DMA_TO_DEVICE, type DmaDirection } from '../dma/dma-types.js';
import {
  type DmaIovaState,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaSize,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaUseIova,
} from '../dma/iova-api.js';
import { dmaGetMergeBoundary, dmaMapPhys, dmaMappingError, dmaNeedUnmap } from '../dma/mapping.js';
import {
  newP2pdmaMapState,
  type P2pdmaMapState,
  pciP2pdmaBusAddrMap,
  pciP2pdmaState,
} from '../dma/p2p-state.js';
import type { P2pdmaMapType } from '../pci/p2pdma.js';
import { type BioSeg, bioSegs } from './bio.js';
import type { Request } from './blk-mq.js';
import { type BlkStatus, errnoToBlkStatus } from './blk-status.js';

/** `struct phys_vec`. */
export interface PhysVec {
  paddr: PhysAddr;
  len: number;
}

/** `struct blk_map_iter`: a cursor over the request's bio segments. */
export interface BlkMapIter {
  readonly segs: readonly BioSeg[];
  i: number;
  off: number;
}

/** `struct blk_dma_iter`. */
export interface BlkDmaIter {
  addr: DmaAddr;
  len: number;
  status: BlkStatus;
  readonly iter: BlkMapIter;
  readonly p2pdma: P2pdmaMapState;
}

/** `rq_dma_dir()`. */
export const rqDmaDir = (rq: Request): DmaDirection => (rq.op === 'read' ? DMA_FROM_DEVICE : DMA_TO_DEVICE);

const segPhys = (s: BioSeg, off: number): bigint =>
  (BigInt(s.page.pfn) << BigInt(PAGE_SHIFT)) + BigInt(s.offset + off);

/** `get_max_segment_size()`: the max segment size, cut at the segment boundary after `paddr`. */
function maxSegmentSize(rq: Request, paddr: bigint): number {
  const lim = rq.q.limits;
  const toBoundary = lim.segBoundaryMask - (paddr & lim.segBoundaryMask) + 1n;
  return Number(toBoundary < BigInt(lim.maxSegmentSize) ? toBoundary : BigInt(lim.maxSegmentSize));
}

/**
 * `blk_map_iter_next()`: the next physical segment: the current piece (clamped to the max segment
 * size), extended by following pieces while they continue it physically and the size allows.
 * @returns false when the request is exhausted.
 */
export function blkMapIterNext(rq: Request, it: BlkMapIter, vec: PhysVec): boolean {
  const s = it.segs[it.i];
  if (s === undefined) return false;
  const paddr = segPhys(s, it.off);
  const max = maxSegmentSize(rq, paddr);
  let len = Math.min(s.len - it.off, max);
  it.off += len;
  if (it.off === s.len) {
    it.i++;
    it.off = 0;
    // Whole pieces only are merged, as the kernel merges whole bvecs after the first.
    for (let n = it.segs[it.i]; n !== undefined; n = it.segs[it.i]) {
      const mask = rq.q.limits.segBoundaryMask;
      const start = segPhys(n, 0);
      const contiguous =
        start === paddr + BigInt(len) && (paddr | mask) === ((start + BigInt(n.len) - 1n) | mask);
      if (len + n.len > max || !contiguous) break;
      len += n.len;
      it.i++;
    }
  }
  vec.paddr = physAddr(paddr);
  vec.len = len;
  return true;
}

/** `blk_can_dma_map_iova()`: the segments can be coalesced at the IOMMU granule. */
const blkCanDmaMapIova = (rq: Request, dev: DmaDevice): boolean =>
  (BigInt(rq.q.limits.virtBoundaryMask + 1) & dmaGetMergeBoundary(dev)) === 0n;

function blkDmaMapBus(iter: BlkDmaIter, vec: PhysVec): boolean {
  if (iter.p2pdma.mem === null) throw new Error('BUG: bus mapping without a P2P provider');
  iter.addr = dmaAddr(pciP2pdmaBusAddrMap(iter.p2pdma.mem, vec.paddr));
  iter.len = vec.len;
  return true;
}

function blkDmaMapDirect(rq: Request, dev: DmaDevice, iter: BlkDmaIter, vec: PhysVec): boolean {
  const attrs = iter.p2pdma.map === 'thru-host-bridge' ? DMA_ATTR_MMIO : 0;
  iter.addr = dmaMapPhys(dev, vec.paddr, bytes(vec.len), rqDmaDir(rq), attrs);
  if (!dmaMappingError(dev, iter.addr).ok) {
    iter.status = 'resource';
    return false;
  }
  iter.len = vec.len;
  return true;
}

function blkRqDmaMapIova(
  rq: Request,
  dev: DmaDevice,
  state: DmaIovaState,
  iter: BlkDmaIter,
  vec: PhysVec,
): boolean {
  const dir = rqDmaDir(rq);
  const attrs = iter.p2pdma.map === 'thru-host-bridge' ? DMA_ATTR_MMIO : 0;
  let mapped = 0;
  iter.addr = state.addr;
  iter.len = Number(dmaIovaSize(state));
  do {
    const r = dmaIovaLink(dev, state, vec.paddr, bytes(mapped), bytes(vec.len), dir, attrs);
    if (!r.ok) break;
    mapped += vec.len;
  } while (blkMapIterNext(rq, iter.iter, vec));
  const s = dmaIovaSync(dev, state, bytes(0), bytes(mapped));
  if (!s.ok) {
    iter.status = errnoToBlkStatus(s.errno);
    return false;
  }
  return true;
}

/** A DMA iterator for `rq` (the caller's stack variable in the kernel). */
export const newBlkDmaIter = (rq: Request): BlkDmaIter => ({
  addr: dmaAddr(0),
  len: 0,
  status: 'ok',
  iter: { segs: bioSegs(rq.bio), i: 0, off: 0 },
  p2pdma: newP2pdmaMapState(),
});

/**
 * `blk_rq_dma_map_iter_start()`: map the first DMA range of `rq` for `dev`.
 * @returns true with iter.addr/len set; false with iter.status: 'ok' (nothing to map), 'inval' (P2P
 *   memory the device cannot reach), 'resource' (dma_map_phys failed), or the IOVA sync error's status.
 */
export function blkRqDmaMapIterStart(
  rq: Request,
  dev: DmaDevice,
  state: DmaIovaState,
  iter: BlkDmaIter,
): boolean {
  const vec: PhysVec = { paddr: physAddr(0), len: 0 };
  iter.status = 'ok';
  iter.p2pdma.mem = null;
  iter.p2pdma.map = 'none';
  if (!blkMapIterNext(rq, iter.iter, vec)) return false;
  switch (pciP2pdmaState(iter.p2pdma, dev, Number(vec.paddr >> BigInt(PAGE_SHIFT)))) {
    case 'bus-addr':
      return blkDmaMapBus(iter, vec);
    case 'thru-host-bridge':
    case 'none':
      break;
    default:
      iter.status = 'inval';
      return false;
  }
  if (blkCanDmaMapIova(rq, dev) && dmaIovaTryAlloc(dev, state, vec.paddr, bytes(rq.dataLen)))
    return blkRqDmaMapIova(rq, dev, state, iter, vec);
  state.addr = dmaAddr(0);
  state.size = 0n;
  return blkDmaMapDirect(rq, dev, iter, vec);
}

/**
 * `blk_rq_dma_map_iter_next()`: map the next range.
 * @returns true with iter.addr/len; false at the end (status 'ok') or on error (status 'resource').
 */
export function blkRqDmaMapIterNext(
  rq: Request,
  dev: DmaDevice,
  _state: DmaIovaState,
  iter: BlkDmaIter,
): boolean {
  const vec: PhysVec = { paddr: physAddr(0), len: 0 };
  if (!blkMapIterNext(rq, iter.iter, vec)) return false;
  if (iter.p2pdma.map === 'bus-addr') return blkDmaMapBus(iter, vec);
  return blkDmaMapDirect(rq, dev, iter, vec);
}

/** `blk_rq_dma_map_coalesce()`: was the whole request mapped as one IOVA range? */
export const blkRqDmaMapCoalesce = (state: DmaIovaState): boolean => dmaUseIova(state);

/**
 * `blk_dma_unmap()`: undo what can be undone without per-segment addresses.
 * @returns true when nothing is left to do (bus addresses, or the IOVA range destroyed, or a device
 *   that needs no unmap); false when the driver must dma_unmap_phys() each range it stored.
 */
export function blkDmaUnmap(
  rq: Request,
  dev: DmaDevice,
  state: DmaIovaState,
  mappedLen: Bytes,
  map: P2pdmaMapType,
): boolean {
  if (map === 'bus-addr') return true;
  if (dmaUseIova(state)) {
    dmaIovaDestroy(dev, state, mappedLen, rqDmaDir(rq), map === 'thru-host-bridge' ? DMA_ATTR_MMIO : 0);
    return true;
  }
  return !dmaNeedUnmap(dev);
}
