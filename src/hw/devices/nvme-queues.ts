// NVMe queue pairs as the controller keeps them: submission queues it fetches commands from (head
// chases the tail doorbell), completion queues it posts entries to (tail chases the head doorbell,
// the phase tag flips on every wrap so the host can tell new entries from old). Mirrors the
// controller side of what drivers/nvme/host/pci.c's nvme_queue drives (sq_tail / cq_head / cq_phase).
//
//   SQ ring: [head ... tail)  = commands posted, not yet fetched         entry: 64 bytes
//   CQ ring: [head ... tail)  = completions posted, not yet consumed     entry: 16 bytes, phase bit

import {
  NVME_CQE_BYTES,
  NVME_SQE_BYTES,
  type NvmeStatus,
  nvmeStatusField,
  SQE_CDW10,
  SQE_CID,
  SQE_DPTR,
  SQE_FLAGS,
  SQE_MPTR,
  SQE_NSID,
  SQE_OPC,
  SQE_PRP2,
} from './nvme-regs.js';

export interface NvmeSq {
  readonly qid: number;
  /** Bus address (or CMB address) of entry 0; the queue is physically contiguous. */
  readonly base: bigint;
  readonly entries: number;
  readonly cqid: number;
  head: number;
  tail: number;
  fetching: boolean;
}

export interface PendingCqe {
  readonly sqid: number;
  readonly cid: number;
  readonly status: NvmeStatus;
  readonly result: number;
}

export interface NvmeCq {
  readonly qid: number;
  readonly base: bigint;
  readonly entries: number;
  readonly ien: boolean;
  readonly iv: number;
  head: number;
  tail: number;
  phase: 0 | 1;
  /** Completions waiting for room (the host has not consumed enough entries). */
  readonly waiting: PendingCqe[];
}

export interface NvmeCommand {
  readonly opc: number;
  readonly flags: number;
  readonly cid: number;
  readonly nsid: number;
  readonly mptr: bigint;
  readonly prp1: bigint;
  readonly prp2: bigint;
  /** The 16 bytes at the data pointer (SGL1 when PSDT selects SGLs). */
  readonly dptr: Uint8Array;
  /** Command dwords 10..15. */
  readonly cdw: readonly number[];
}

/** Decode one 64-byte submission queue entry. */
export function decodeSqe(b: Uint8Array): NvmeCommand {
  if (b.length !== NVME_SQE_BYTES) throw new RangeError(`an SQE is 64 bytes, got ${b.length}`);
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  return {
    opc: dv.getUint8(SQE_OPC),
    flags: dv.getUint8(SQE_FLAGS),
    cid: dv.getUint16(SQE_CID, true),
    nsid: dv.getUint32(SQE_NSID, true),
    mptr: dv.getBigUint64(SQE_MPTR, true),
    prp1: dv.getBigUint64(SQE_DPTR, true),
    prp2: dv.getBigUint64(SQE_PRP2, true),
    dptr: b.slice(SQE_DPTR, SQE_DPTR + 16),
    cdw: [0, 1, 2, 3, 4, 5].map((i) => dv.getUint32(SQE_CDW10 + 4 * i, true)),
  };
}

/** Encode a 16-byte completion queue entry. */
export function encodeCqe(c: PendingCqe, sqhd: number, phase: 0 | 1): Uint8Array {
  const b = new Uint8Array(NVME_CQE_BYTES);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, c.result >>> 0, true);
  dv.setUint16(8, sqhd, true);
  dv.setUint16(10, c.sqid, true);
  dv.setUint16(12, c.cid, true);
  dv.setUint16(14, (phase | (nvmeStatusField(c.status) << 1)) & 0xffff, true);
  return b;
}

/** Is there room for one more completion (one slot always stays empty: full is tail + 1 == head)? */
export const cqHasRoom = (cq: NvmeCq): boolean => (cq.tail + 1) % cq.entries !== cq.head;

/** Take the next completion slot: its index and the phase tag to write, advancing the tail. */
export function cqTakeSlot(cq: NvmeCq): { slot: number; phase: 0 | 1 } {
  const slot = cq.tail;
  const phase = cq.phase;
  cq.tail = (cq.tail + 1) % cq.entries;
  if (cq.tail === 0) cq.phase = phase === 1 ? 0 : 1;
  return { slot, phase };
}

/** Entries posted in an SQ and not yet fetched, contiguous from the head (up to the ring's end). */
export function sqContiguousPending(sq: NvmeSq): number {
  if (sq.tail >= sq.head) return sq.tail - sq.head;
  return sq.entries - sq.head;
}
