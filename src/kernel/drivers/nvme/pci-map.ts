// Mapping a request's data for an NVMe command (drivers/nvme/host/pci.c, 6.17+: `nvme_map_data()`,
// `nvme_pci_setup_data_prp()`, `nvme_pci_setup_data_sgl()`, `nvme_unmap_data()`), straight from the
// block layer's DMA iterator into PRPs or SGL descriptors.
//
//   PRP:  PRP1 = first address (may start mid-page); the rest in 4 KiB controller pages:
//         one more page -> PRP2 = its address; more -> PRP2 = a PRP list from a dma_pool (256-byte
//         blocks for up to 32 entries, else 4 KiB pages), chained through its last entry when full
//   SGL:  (I/O queues, controller supports SGLs, average segment >= sgl_threshold 32 KiB)
//         one range (or one IOVA range) -> a Data Block descriptor in the command; else a list of
//         Data Block descriptors and a Last Segment descriptor pointing at it
//   unmap: blk_dma_unmap(); when it leaves work, dma_unmap_phys() each range kept in dma_vecs (PRP)
//          or named by the SGL descriptors
//
// The iterator gives -EINVAL's BLK_STS_INVAL for P2P memory the controller cannot reach; it is
// returned as is, so the request fails before anything is submitted.

import { bytes, type DmaAddr, dmaAddr } from '../../../hw/addr.js';
import type { Request } from '../../block/blk-mq.js';
import {
  type BlkDmaIter,
  blkDmaUnmap,
  blkRqDmaMapCoalesce,
  blkRqDmaMapIterNext,
  blkRqDmaMapIterStart,
  newBlkDmaIter,
  rqDmaDir,
} from '../../block/blk-mq-dma.js';
import type { BlkStatus } from '../../block/blk-status.js';
import type { DmaDevice } from '../../dma/device.js';
import { DMA_ATTR_MMIO } from '../../dma/dma-types.js';
import { type DmaIovaState, dmaUseIova, newDmaIovaState } from '../../dma/iova-api.js';
import { dmaNeedUnmap, dmaUnmapPhys } from '../../dma/mapping.js';
import { dmaUnmapSgtable } from '../../dma/mapping-sg.js';
import type { SgTable } from '../../lib/scatterlist.js';
import type { P2pdmaMapType } from '../../pci/p2pdma.js';
import { type DmaPool, dmaPoolAlloc, dmaPoolFree } from './coherent.js';
import {
  NVME_CMD_SGL_METABUF,
  NVME_CTRL_PAGE_SIZE,
  NVME_SGL_FMT_DATA_DESC,
  NVME_SGL_FMT_LAST_SEG_DESC,
  NvmeCommand,
  sglDesc,
} from './nvme-defs.js';

/** `NVME_SMALL_POOL_SIZE`: the small descriptor pool's block size. */
export const NVME_SMALL_POOL_SIZE = 256;
/** `sgl_threshold` module parameter default: use SGLs when the average segment is >= 32 KiB. */
export const SGL_THRESHOLD = 32 * 1024;

/** What the map path needs of the controller and queue. */
export interface NvmeMapCtx {
  readonly dev: DmaDevice;
  readonly smallPool: DmaPool;
  readonly largePool: DmaPool;
  /** `nvme_ctrl_sgl_supported()`. */
  readonly sglSupported: boolean;
  /** Admin queue (qid 0) never uses SGLs. */
  readonly qid: number;
  /** `sgl_threshold` (0 disables SGLs). */
  readonly sglThreshold: number;
  readonly write: (phys: bigint, data: Uint8Array) => void;
  readonly onceErr: (text: string) => void;
}

/** A descriptor block held by a command. */
interface Descriptor {
  readonly block: { phys: import('../../../hw/addr.js').PhysAddr; dma: DmaAddr };
  readonly pool: DmaPool;
}

/** `struct nvme_iod`: the driver's per-request state. */
export interface NvmeIod {
  readonly cmd: NvmeCommand;
  readonly dmaState: DmaIovaState;
  totalLen: number;
  readonly descriptors: Descriptor[];
  /** Ranges to dma_unmap_phys() at completion (PRP path without IOVA, when unmap is needed). */
  readonly dmaVecs: { addr: DmaAddr; len: number }[];
  /** SGL data descriptors written (for unmapping). */
  readonly sglVecs: { addr: DmaAddr; len: number }[];
  useSgl: boolean;
  p2pMap: P2pdmaMapType;
  /** 6.1: the scatterlist mapped with dma_map_sgtable(). */
  sgt: SgTable | null;
}

export const newIod = (): NvmeIod => ({
  cmd: new NvmeCommand(),
  dmaState: newDmaIovaState(),
  totalLen: 0,
  descriptors: [],
  dmaVecs: [],
  sglVecs: [],
  useSgl: false,
  p2pMap: 'none',
  sgt: null,
});

const le64 = (v: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
};

/**
 * The DMA ranges of a request as the PRP/SGL builders consume them: `addr`/`len` is the current
 * range (advanced as it is used), `next()` moves to the following one. 6.17+ feeds it from the block
 * layer's DMA iterator; 6.1 from the entries of a mapped scatterlist.
 */
export interface DmaRanges {
  addr: DmaAddr;
  len: number;
  status: BlkStatus;
  next(): boolean;
}

function allocDescriptor(c: NvmeMapCtx, iod: NvmeIod, small: boolean): Descriptor | null {
  const pool = small ? c.smallPool : c.largePool;
  const block = dmaPoolAlloc(pool);
  if (block === null) return null;
  const d = { block, pool };
  iod.descriptors.push(d);
  return d;
}

function badSgl(c: NvmeMapCtx, rq: Request): BlkStatus {
  c.onceErr(`Incorrectly formed request for payload:${rq.dataLen} nents:${rq.nrPhysSegments}`);
  return 'ioerr';
}

/** Use the next range once the current one is spent. */
const advance = (r: DmaRanges): boolean => r.len > 0 || r.next();

/**
 * `nvme_pci_setup_data_prp()` (6.1: `nvme_pci_setup_prps()`): PRP1, then PRP2 or a PRP list.
 * @returns 'ok', 'resource' (no list page), 'ioerr' (a range that is not page-aligned where it must
 *   be), or the range source's status.
 */
export function setupPrp(c: NvmeMapCtx, rq: Request, iod: NvmeIod, r: DmaRanges): BlkStatus {
  const P = NVME_CTRL_PAGE_SIZE;
  let length = rq.dataLen;
  const prp1 = r.addr;
  let prp2 = 0n;
  const take = (n: number): void => {
    iod.totalLen += n;
    r.addr = dmaAddr(r.addr + BigInt(n));
    r.len -= n;
    length -= n;
  };
  take(Math.min(length, P - Number(r.addr & BigInt(P - 1))));
  if (length > 0) {
    if (!advance(r)) return r.status === 'ok' ? badSgl(c, rq) : r.status;
    if (length <= P) {
      prp2 = r.addr;
      iod.totalLen += length;
    } else {
      let list = allocDescriptor(c, iod, Math.ceil(length / P) <= NVME_SMALL_POOL_SIZE / 8);
      if (list === null) return 'resource';
      prp2 = list.block.dma;
      let i = 0;
      let last = 0n;
      for (;;) {
        if (i === P >> 3) {
          // Chain: the last entry of the full list moves to the new list and points to it.
          const next = allocDescriptor(c, iod, false);
          if (next === null) return 'resource';
          c.write(next.block.phys, le64(last));
          c.write(list.block.phys + BigInt((i - 1) * 8), le64(next.block.dma));
          list = next;
          i = 1;
        }
        c.write(list.block.phys + BigInt(i * 8), le64(r.addr));
        last = r.addr;
        i++;
        const n = Math.min(length, P);
        if (r.len < n) return badSgl(c, rq);
        take(n);
        if (length === 0) break;
        if (!advance(r)) return r.status === 'ok' ? badSgl(c, rq) : r.status;
      }
    }
  }
  iod.cmd.setPrp(prp1, prp2);
  return 'ok';
}

/**
 * `nvme_pci_setup_data_sgl()` (6.1: `nvme_pci_setup_sgls()`): one Data Block descriptor in the
 * command for a single range, else a descriptor list and a Last Segment descriptor.
 * @returns 'ok', 'resource' (no list block), 'ioerr' (more ranges than counted), or the source's status.
 */
export function setupSgl(c: NvmeMapCtx, iod: NvmeIod, r: DmaRanges, entries: number): BlkStatus {
  iod.useSgl = true;
  iod.cmd.flags |= NVME_CMD_SGL_METABUF;
  if (entries === 1) {
    iod.cmd.setSgl(r.addr, r.len, NVME_SGL_FMT_DATA_DESC);
    iod.sglVecs.push({ addr: r.addr, len: r.len });
    iod.totalLen += r.len;
    return 'ok';
  }
  const list = allocDescriptor(c, iod, entries <= NVME_SMALL_POOL_SIZE / 16);
  if (list === null) return 'resource';
  let mapped = 0;
  do {
    if (mapped === entries) {
      r.status = 'ioerr';
      break;
    }
    c.write(list.block.phys + BigInt(mapped * 16), sglDesc(r.addr, r.len, NVME_SGL_FMT_DATA_DESC));
    iod.sglVecs.push({ addr: r.addr, len: r.len });
    iod.totalLen += r.len;
    mapped++;
  } while (r.next());
  iod.cmd.setSgl(list.block.dma, mapped * 16, NVME_SGL_FMT_LAST_SEG_DESC);
  return r.status;
}

/** The 6.17+ range source: the block layer's DMA iterator, keeping ranges to unmap when needed. */
function iterRanges(c: NvmeMapCtx, rq: Request, iod: NvmeIod, it: BlkDmaIter): DmaRanges {
  const save = (): void => {
    if (!dmaUseIova(iod.dmaState) && dmaNeedUnmap(c.dev)) iod.dmaVecs.push({ addr: it.addr, len: it.len });
  };
  save();
  return {
    get addr() {
      return it.addr;
    },
    set addr(a: DmaAddr) {
      it.addr = a;
    },
    get len() {
      return it.len;
    },
    set len(n: number) {
      it.len = n;
    },
    get status() {
      return it.status;
    },
    set status(s: BlkStatus) {
      it.status = s;
    },
    next() {
      if (!blkRqDmaMapIterNext(rq, c.dev, iod.dmaState, it)) return false;
      save();
      return true;
    },
  };
}

/** `nvme_pci_avg_seg_size()`. */
export const avgSegSize = (rq: Request): number => Math.floor(rq.dataLen / Math.max(1, rq.nrPhysSegments));

/**
 * `nvme_map_data()`: map the request and fill the command's data pointer.
 * @returns 'ok'; 'inval' (P2P memory the controller cannot reach), 'resource' (a mapping or a
 *   descriptor could not be had), 'ioerr' (a malformed request). On failure everything mapped so far
 *   is unmapped again.
 */
export function nvmeMapData(c: NvmeMapCtx, rq: Request, iod: NvmeIod): BlkStatus {
  const it = newBlkDmaIter(rq);
  if (!blkRqDmaMapIterStart(rq, c.dev, iod.dmaState, it)) return it.status;
  iod.p2pMap = it.p2pdma.map;
  const r = iterRanges(c, rq, iod, it);
  const sgl = c.qid !== 0 && c.sglSupported && c.sglThreshold > 0 && avgSegSize(rq) >= c.sglThreshold;
  const entries = blkRqDmaMapCoalesce(iod.dmaState) ? 1 : rq.nrPhysSegments;
  const st = sgl ? setupSgl(c, iod, r, entries) : setupPrp(c, rq, iod, r);
  if (st !== 'ok') nvmeUnmapData(c, rq, iod);
  return st;
}

/** `nvme_unmap_data()`: undo the DMA mappings and give the descriptor blocks back. */
export function nvmeUnmapData(c: NvmeMapCtx, rq: Request, iod: NvmeIod): void {
  if (iod.sgt !== null) {
    dmaUnmapSgtable(c.dev, iod.sgt, rqDmaDir(rq));
    iod.sgt = null;
  } else if (!blkDmaUnmap(rq, c.dev, iod.dmaState, bytes(iod.totalLen), iod.p2pMap)) {
    const attrs = iod.p2pMap === 'thru-host-bridge' ? DMA_ATTR_MMIO : 0;
    for (const v of iod.useSgl ? iod.sglVecs : iod.dmaVecs)
      dmaUnmapPhys(c.dev, v.addr, bytes(v.len), rqDmaDir(rq), attrs);
  }
  iod.dmaVecs.length = 0;
  iod.sglVecs.length = 0;
  for (const d of iod.descriptors.splice(0)) dmaPoolFree(d.pool, d.block);
}
