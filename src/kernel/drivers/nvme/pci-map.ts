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
});

const le64 = (v: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
};

/** `nvme_pci_prp_save_mapping()`: keep a range for unmapping when the device needs it. */
function saveMapping(c: NvmeMapCtx, iod: NvmeIod, it: BlkDmaIter): void {
  if (!dmaUseIova(iod.dmaState) && dmaNeedUnmap(c.dev)) iod.dmaVecs.push({ addr: it.addr, len: it.len });
}

/** `nvme_pci_prp_iter_next()`: the next range once the current one is used up. */
function prpIterNext(c: NvmeMapCtx, rq: Request, iod: NvmeIod, it: BlkDmaIter): boolean {
  if (it.len > 0) return true;
  if (!blkRqDmaMapIterNext(rq, c.dev, iod.dmaState, it)) return false;
  saveMapping(c, iod, it);
  return true;
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

/** `nvme_pci_setup_data_prp()`. @returns the status ('ok', 'resource', 'ioerr', or the iterator's). */
function setupPrp(c: NvmeMapCtx, rq: Request, iod: NvmeIod, it: BlkDmaIter): BlkStatus {
  const P = NVME_CTRL_PAGE_SIZE;
  saveMapping(c, iod, it);
  let length = rq.dataLen;
  const prp1 = it.addr;
  let prp2 = 0n;
  const take = (n: number): void => {
    iod.totalLen += n;
    it.addr = dmaAddr(it.addr + BigInt(n));
    it.len -= n;
    length -= n;
  };
  take(Math.min(length, P - Number(it.addr & BigInt(P - 1))));
  if (length > 0) {
    if (!prpIterNext(c, rq, iod, it)) return it.status === 'ok' ? badSgl(c, rq) : it.status;
    if (length <= P) {
      prp2 = it.addr;
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
        c.write(list.block.phys + BigInt(i * 8), le64(it.addr));
        last = it.addr;
        i++;
        const n = Math.min(length, P);
        if (it.len < n) return badSgl(c, rq);
        take(n);
        if (length === 0) break;
        if (!prpIterNext(c, rq, iod, it)) return it.status === 'ok' ? badSgl(c, rq) : it.status;
      }
    }
  }
  iod.cmd.setPrp(prp1, prp2);
  return 'ok';
}

/** `nvme_pci_setup_data_sgl()`. */
function setupSgl(c: NvmeMapCtx, rq: Request, iod: NvmeIod, it: BlkDmaIter): BlkStatus {
  iod.useSgl = true;
  iod.cmd.flags |= NVME_CMD_SGL_METABUF;
  const entries = blkRqDmaMapCoalesce(iod.dmaState) ? 1 : rq.nrPhysSegments;
  if (entries === 1) {
    iod.cmd.setSgl(it.addr, it.len, NVME_SGL_FMT_DATA_DESC);
    iod.sglVecs.push({ addr: it.addr, len: it.len });
    iod.totalLen += it.len;
    return 'ok';
  }
  const list = allocDescriptor(c, iod, entries <= NVME_SMALL_POOL_SIZE / 16);
  if (list === null) return 'resource';
  let mapped = 0;
  do {
    if (mapped === entries) {
      it.status = 'ioerr';
      break;
    }
    c.write(list.block.phys + BigInt(mapped * 16), sglDesc(it.addr, it.len, NVME_SGL_FMT_DATA_DESC));
    iod.sglVecs.push({ addr: it.addr, len: it.len });
    iod.totalLen += it.len;
    mapped++;
  } while (blkRqDmaMapIterNext(rq, c.dev, iod.dmaState, it));
  iod.cmd.setSgl(list.block.dma, mapped * 16, NVME_SGL_FMT_LAST_SEG_DESC);
  return it.status;
}

/** `nvme_pci_avg_seg_size()`. */
const avgSegSize = (rq: Request): number => Math.floor(rq.dataLen / Math.max(1, rq.nrPhysSegments));

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
  const sgl = c.qid !== 0 && c.sglSupported && c.sglThreshold > 0 && avgSegSize(rq) >= c.sglThreshold;
  const st = sgl ? setupSgl(c, rq, iod, it) : setupPrp(c, rq, iod, it);
  if (st !== 'ok') nvmeUnmapData(c, rq, iod);
  return st;
}

/** `nvme_unmap_data()`: undo the DMA mappings and give the descriptor blocks back. */
export function nvmeUnmapData(c: NvmeMapCtx, rq: Request, iod: NvmeIod): void {
  if (!blkDmaUnmap(rq, c.dev, iod.dmaState, bytes(iod.totalLen), iod.p2pMap)) {
    const attrs = iod.p2pMap === 'thru-host-bridge' ? DMA_ATTR_MMIO : 0;
    for (const v of iod.useSgl ? iod.sglVecs : iod.dmaVecs)
      dmaUnmapPhys(c.dev, v.addr, bytes(v.len), rqDmaDir(rq), attrs);
  }
  iod.dmaVecs.length = 0;
  iod.sglVecs.length = 0;
  for (const d of iod.descriptors.splice(0)) dmaPoolFree(d.pool, d.block);
}
