// The host's side of the NVMe interface, in the hardware's own terms: encode submission entries and
// SGL descriptors, lay PRP lists out, enable the controller through its registers, and run a queue
// pair in memory (write SQEs, ring the tail doorbell, reap CQEs by phase tag, ring the head
// doorbell). Mirrors the mechanics of drivers/nvme/host/pci.c (nvme_sq_copy_cmd + nvme_write_sq_db,
// nvme_cqe_pending / nvme_update_cq_head / nvme_ring_cq_doorbell, nvme_enable_ctrl); the kernel
// model's driver makes the policy decisions, this file only speaks the protocol. Every access is a
// CPU load or store (AddressMap.cpuRead / cpuWrite): RAM by physical address, registers through BAR0.

import { type PhysAddr, physAddr } from '../addr.js';
import type { Fabric } from '../fabric/fabric.js';
import type { NvmeController } from './nvme.js';
import * as R from './nvme-regs.js';
import { decodeNvmeStatus, type NvmeStatus } from './nvme-regs.js';

export interface SqeFields {
  readonly opc: number;
  readonly cid: number;
  readonly nsid?: number;
  /** Byte 1: FUSE and PSDT (NVME_CMD_SGL_METABUF for SGLs). */
  readonly flags?: number;
  readonly prp1?: bigint;
  readonly prp2?: bigint;
  /** A 16-byte SGL1 descriptor, placed over PRP1/PRP2. */
  readonly sgl?: Uint8Array;
  /** Command dwords 10..15. */
  readonly cdw?: readonly number[];
}

/** Encode a 64-byte submission queue entry. */
export function encodeSqe(f: SqeFields): Uint8Array {
  const b = new Uint8Array(R.NVME_SQE_BYTES);
  const dv = new DataView(b.buffer);
  dv.setUint8(R.SQE_OPC, f.opc);
  dv.setUint8(R.SQE_FLAGS, f.flags ?? 0);
  dv.setUint16(R.SQE_CID, f.cid, true);
  dv.setUint32(R.SQE_NSID, f.nsid ?? 0, true);
  dv.setBigUint64(R.SQE_DPTR, f.prp1 ?? 0n, true);
  dv.setBigUint64(R.SQE_PRP2, f.prp2 ?? 0n, true);
  if (f.sgl) b.set(f.sgl, R.SQE_DPTR);
  (f.cdw ?? []).forEach((v, i) => {
    dv.setUint32(R.SQE_CDW10 + 4 * i, v >>> 0, true);
  });
  return b;
}

/** Encode one 16-byte SGL descriptor of `type` (NVME_SGL_FMT_*), address subtype. */
export function encodeSglDesc(addr: bigint, len: number, type: number): Uint8Array {
  const b = new Uint8Array(R.NVME_SGL_DESC_BYTES);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, addr, true);
  dv.setUint32(8, len, true);
  dv.setUint8(15, (type << 4) | R.NVME_SGL_FMT_ADDRESS);
  return b;
}

/** Little-endian 64-bit entries (a PRP list page). */
export function encodePrpList(entries: readonly bigint[]): Uint8Array {
  const b = new Uint8Array(entries.length * 8);
  const dv = new DataView(b.buffer);
  entries.forEach((e, i) => {
    dv.setBigUint64(i * 8, e, true);
  });
  return b;
}

export interface NvmeCompletion {
  readonly result: number;
  readonly sqhd: number;
  readonly sqid: number;
  readonly cid: number;
  readonly status: NvmeStatus;
}

const reg32 = (fab: Fabric, ctrl: NvmeController, off: number): number => {
  const b = new Uint8Array(4);
  fab.addressMap.cpuRead(physAddr(barBase(ctrl) + BigInt(off)), b);
  return new DataView(b.buffer).getUint32(0, true);
};
const barBase = (ctrl: NvmeController): bigint => ctrl.fn.bars.find((b) => b.index === 0)!.cpuStart;

/** A 32-bit register store through BAR0 (`writel`). */
export function nvmeWritel(fab: Fabric, ctrl: NvmeController, off: number, v: number): void {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  fab.addressMap.cpuWrite(physAddr(barBase(ctrl) + BigInt(off)), b);
}

/** A 64-bit register store as two 32-bit stores, low half first (`lo_hi_writeq`). */
export function nvmeWriteq(fab: Fabric, ctrl: NvmeController, off: number, v: bigint): void {
  nvmeWritel(fab, ctrl, off, Number(v & 0xffffffffn));
  nvmeWritel(fab, ctrl, off + 4, Number(v >> 32n));
}

export const nvmeReadl = reg32;

/**
 * Program the admin queue and set CC.EN (`nvme_enable_ctrl` after `nvme_pci_configure_admin_queue`);
 * CSTS.RDY follows after the controller's enable time.
 */
export function nvmeEnable(
  fab: Fabric,
  ctrl: NvmeController,
  asq: bigint,
  acq: bigint,
  entries: number,
  cqEntries = entries,
): void {
  nvmeWritel(fab, ctrl, R.NVME_REG_AQA, ((cqEntries - 1) << 16) | (entries - 1));
  nvmeWriteq(fab, ctrl, R.NVME_REG_ASQ, asq);
  nvmeWriteq(fab, ctrl, R.NVME_REG_ACQ, acq);
  const cc = R.NVME_CC_ENABLE | (6 << R.NVME_CC_IOSQES_SHIFT) | (4 << R.NVME_CC_IOCQES_SHIFT);
  nvmeWritel(fab, ctrl, R.NVME_REG_CC, cc);
}

/** A queue pair from the host's side: rings in memory it can store to, and the doorbells. */
export class NvmeHostQueue {
  readonly fab: Fabric;
  readonly ctrl: NvmeController;
  readonly qid: number;
  readonly entries: number;
  readonly cqEntries: number;
  /** CPU physical addresses of the rings (a CMB ring is in BAR memory). */
  readonly sqPhys: PhysAddr;
  readonly cqPhys: PhysAddr;
  sqTail = 0;
  cqHead = 0;
  phase: 0 | 1 = 1;

  constructor(
    fab: Fabric,
    ctrl: NvmeController,
    qid: number,
    sqPhys: bigint,
    cqPhys: bigint,
    entries: number,
    cqEntries = entries,
  ) {
    this.fab = fab;
    this.ctrl = ctrl;
    this.qid = qid;
    this.sqPhys = physAddr(sqPhys);
    this.cqPhys = physAddr(cqPhys);
    this.entries = entries;
    this.cqEntries = cqEntries;
  }

  /** Copy an SQE into the ring and ring the tail doorbell (`nvme_submit_cmd`). */
  submit(sqe: Uint8Array): void {
    this.fab.addressMap.cpuWrite(physAddr(this.sqPhys + BigInt(this.sqTail * R.NVME_SQE_BYTES)), sqe);
    this.sqTail = (this.sqTail + 1) % this.entries;
    nvmeWritel(this.fab, this.ctrl, R.NVME_REG_DBS + 8 * this.qid, this.sqTail);
  }

  /** Take every completion whose phase tag is current, then ring the head doorbell (`nvme_poll_cq`). */
  reap(): NvmeCompletion[] {
    const out: NvmeCompletion[] = [];
    const b = new Uint8Array(R.NVME_CQE_BYTES);
    for (;;) {
      this.fab.addressMap.cpuRead(physAddr(this.cqPhys + BigInt(this.cqHead * R.NVME_CQE_BYTES)), b);
      const dv = new DataView(b.buffer);
      const sw = dv.getUint16(14, true);
      if ((sw & 1) !== this.phase) break;
      out.push({
        result: dv.getUint32(0, true),
        sqhd: dv.getUint16(8, true),
        sqid: dv.getUint16(10, true),
        cid: dv.getUint16(12, true),
        status: decodeNvmeStatus(sw >> 1),
      });
      this.cqHead = (this.cqHead + 1) % this.cqEntries;
      if (this.cqHead === 0) this.phase = this.phase === 1 ? 0 : 1;
    }
    if (out.length > 0) nvmeWritel(this.fab, this.ctrl, R.NVME_REG_DBS + 8 * this.qid + 4, this.cqHead);
    return out;
  }
}
