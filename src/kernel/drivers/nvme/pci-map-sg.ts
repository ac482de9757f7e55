// The 6.1 data mapping of the NVMe driver (drivers/nvme/host/pci.c before the 6.17 conversion): the
// request becomes a scatterlist (`blk_rq_map_sg()`), `dma_map_sgtable(..., DMA_ATTR_NO_WARN)` maps it,
// and the PRP or SGL builder walks the mapped entries.
//
//   dma_map_sgtable(): -EREMOTEIO (P2P memory the device cannot reach) -> BLK_STS_TARGET (the user
//                      sees -EREMOTEIO, "critical target error"); any other error -> BLK_STS_RESOURCE
//   SGLs when the I/O queue and controller allow and the average mapped segment >= sgl_threshold
//
// The single-segment shortcuts of 6.1 (`nvme_setup_prp_simple`, `nvme_setup_sgl_simple`, normal
// memory only) give the same PRPs and descriptors and are not modelled separately.

import { type DmaAddr, physAddr } from '../../../hw/addr.js';
import { bioSegs } from '../../block/bio.js';
import type { Request } from '../../block/blk-mq.js';
import { type BlkMapIter, blkMapIterNext, type PhysVec, rqDmaDir } from '../../block/blk-mq-dma.js';
import type { BlkStatus } from '../../block/blk-status.js';
import { DMA_ATTR_NO_WARN } from '../../dma/dma-types.js';
import { dmaMapSgtable } from '../../dma/mapping-sg.js';
import {
  forEachSgtableDmaSg,
  newSgTable,
  type Scatterlist,
  sgAllocTable,
  sgDmaAddress,
  sgDmaLen,
  sgSetPage,
} from '../../lib/scatterlist.js';
import {
  type DmaRanges,
  type NvmeIod,
  type NvmeMapCtx,
  nvmeUnmapData,
  setupPrp,
  setupSgl,
} from './pci-map.js';

/** `blk_rq_map_sg()`: the request's physical segments as scatterlist entries. */
function blkRqMapSg(rq: Request): PhysVec[] {
  const it: BlkMapIter = { segs: bioSegs(rq.bio), i: 0, off: 0 };
  const out: PhysVec[] = [];
  for (
    let v: PhysVec = { paddr: physAddr(0), len: 0 };
    blkMapIterNext(rq, it, v);
    v = { paddr: physAddr(0), len: 0 }
  )
    out.push(v);
  return out;
}

/** The mapped entries of a table as a range source. */
function sgRanges(entries: readonly Scatterlist[]): DmaRanges {
  let i = 0;
  const r: DmaRanges = {
    addr: sgDmaAddress(entries[0]!) as DmaAddr,
    len: sgDmaLen(entries[0]!),
    status: 'ok',
    next() {
      const e = entries[++i];
      if (e === undefined) return false;
      r.addr = sgDmaAddress(e);
      r.len = sgDmaLen(e);
      return true;
    },
  };
  return r;
}

/**
 * 6.1 `nvme_map_data()`.
 * @returns 'ok'; 'target' when dma_map_sgtable() says -EREMOTEIO; 'resource' for any other mapping
 *   error or a missing descriptor block; 'ioerr' for a malformed request.
 */
export function nvmeMapDataSg(c: NvmeMapCtx, rq: Request, iod: NvmeIod): BlkStatus {
  const vecs = blkRqMapSg(rq);
  const sgt = newSgTable();
  if (vecs.length === 0 || !sgAllocTable(sgt, vecs.length, { version: c.dev.ctx.version }).ok)
    return 'resource';
  let sg = sgt.sgl!;
  vecs.forEach((v, i) => {
    const pfn = Number(v.paddr >> 12n);
    sgSetPage(sg, pfn, v.len, Number(v.paddr & 0xfffn));
    if (i + 1 < vecs.length) sg = nextEntry(sg);
  });
  sgt.origNents = vecs.length;
  const m = dmaMapSgtable(c.dev, sgt, rqDmaDir(rq), DMA_ATTR_NO_WARN);
  if (!m.ok) return m.errno === 'EREMOTEIO' ? 'target' : 'resource';
  iod.sgt = sgt;
  const mapped = [...forEachSgtableDmaSg(sgt)];
  const sgl =
    c.qid !== 0 &&
    c.sglSupported &&
    c.sglThreshold > 0 &&
    Math.ceil(rq.dataLen / sgt.nents) >= c.sglThreshold;
  const r = sgRanges(mapped);
  const st = sgl ? setupSgl(c, iod, r, sgt.nents) : setupPrp(c, rq, iod, r);
  if (st !== 'ok') nvmeUnmapData(c, rq, iod);
  return st;
}

/** `sg_next()` over freshly allocated entries. */
function nextEntry(sg: Scatterlist): Scatterlist {
  const n = sg.chunk[sg.slot + 1];
  if (n === undefined) throw new Error('BUG: scatterlist shorter than the request');
  return n.chain !== null ? n.chain[0]! : n;
}
