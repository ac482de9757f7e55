// The queues of the NVMe driver (drivers/nvme/host/pci.c): `struct nvme_queue` with its rings in
// coherent host memory, `nvme_sq_copy_cmd()` + the tail doorbell, and `nvme_poll_cq()` consuming
// completions by phase bit and ringing the head doorbell.
//
//   SQ ring: 64-byte entries, tail advanced by the driver   -> doorbell 0x1000 + 2q * stride
//   CQ ring: 16-byte entries, phase flips on each wrap       -> doorbell 0x1000 + (2q + 1) * stride

import { type DmaAddr, dmaAddr, type PhysAddr, physAddr } from '../../../hw/addr.js';
import type { Request } from '../../block/blk-mq.js';
import { type KResult, ok } from '../../errno.js';
import { type CoherentBuf, dmaAllocCoherent } from './coherent.js';
import { decodeCqe, NVME_REG_DBS, type NvmeCommand, type NvmeCqe } from './nvme-defs.js';
import type { NvmeDev } from './pci.js';

export interface Pending {
  readonly rq: Request | null;
  readonly done: (cqe: NvmeCqe) => void;
}

/** `struct nvme_queue`. */
export interface NvmeQueue {
  readonly qid: number;
  readonly depth: number;
  readonly sq: CoherentBuf;
  readonly cq: CoherentBuf;
  sqTail: number;
  cqHead: number;
  cqPhase: number;
  /** Command id -> what completes it (the kernel finds the request by tag). */
  readonly inflight: Map<number, Pending>;
  nextCid: number;
}

const sqDb = (d: NvmeDev, qid: number): number => NVME_REG_DBS + 2 * qid * 4 * d.dbStride;
const cqDb = (d: NvmeDev, qid: number): number => NVME_REG_DBS + (2 * qid + 1) * 4 * d.dbStride;

export function allocQueue(d: NvmeDev, qid: number, depth: number): KResult<NvmeQueue> {
  const sq = dmaAllocCoherent(d.k, d.dev, depth * 64);
  if (!sq.ok) return sq;
  const cq = dmaAllocCoherent(d.k, d.dev, depth * 16);
  if (!cq.ok) return cq;
  return ok({
    qid,
    depth,
    sq: sq.value,
    cq: cq.value,
    sqTail: 0,
    cqHead: 0,
    cqPhase: 1,
    inflight: new Map(),
    nextCid: 0,
  });
}

/** `nvme_sq_copy_cmd()` + `nvme_write_sq_db()`: the SQE into the ring, then the tail doorbell. */
export function submitCmd(d: NvmeDev, q: NvmeQueue, cmd: NvmeCommand, p: Pending): void {
  let cid = q.nextCid;
  while (q.inflight.has(cid)) cid = (cid + 1) & 0xffff;
  q.nextCid = (cid + 1) & 0xffff;
  cmd.commandId = cid;
  q.inflight.set(cid, p);
  d.k.dma.memory.write(physAddr(q.sq.phys + BigInt(q.sqTail * 64)), cmd.bytes);
  q.sqTail = (q.sqTail + 1) % q.depth;
  d.port.write32(sqDb(d, q.qid), q.sqTail);
}

/** `nvme_poll_cq()`: consume completions whose phase matches, then ring the CQ head doorbell. */
export function pollCq(d: NvmeDev, q: NvmeQueue): void {
  let found = 0;
  for (;;) {
    const cqe = decodeCqe(d.k.dma.memory.read(physAddr(q.cq.phys + BigInt(q.cqHead * 16)), 16));
    if (cqe.phase !== q.cqPhase) break;
    found++;
    if (++q.cqHead === q.depth) {
      q.cqHead = 0;
      q.cqPhase ^= 1;
    }
    const p = q.inflight.get(cqe.commandId);
    if (!p) {
      d.k.log.devWarn(d.fn, `invalid id ${cqe.commandId} completed on queue ${q.qid}`);
      continue;
    }
    q.inflight.delete(cqe.commandId);
    p.done(cqe);
  }
  if (found > 0) d.port.write32(cqDb(d, q.qid), q.cqHead);
}

/** The DMA address of a queue's ring (for tests and reports). */
export const queueRing = (q: NvmeQueue): { sq: DmaAddr; cq: DmaAddr; sqPhys: PhysAddr } => ({
  sq: dmaAddr(q.sq.dma),
  cq: dmaAddr(q.cq.dma),
  sqPhys: q.sq.phys,
});
