// A small NVMe controller for tests of the driver (not the hardware model of src/hw: that one routes
// every DMA through the fabric). It implements what the Linux driver touches: CAP/CC/CSTS/AQA/ASQ/ACQ,
// CMBLOC/CMBSZ/CMBMSC, doorbells, the admin commands of probe (Identify, Set Features, Create CQ/SQ),
// Read/Write with PRP1/PRP2/PRP lists and SGL Data Block/Segment/Last Segment descriptors, completions
// with the phase bit, and an interrupt per completion. Every access to host memory (SQEs, PRP lists,
// data, CQEs) goes through the `dma` function it is given; a failed DMA completes the command with
// Data Transfer Error, as a controller does on a UR or an IOMMU fault.

import { bytes, PAGE_SIZE } from '../../../hw/addr.js';
import { SparseMemory } from '../../../hw/memory/sparse-memory.js';
import {
  NVME_ADMIN_CREATE_CQ,
  NVME_ADMIN_CREATE_SQ,
  NVME_ADMIN_IDENTIFY,
  NVME_ADMIN_SET_FEATURES,
  NVME_CMBSZ_RDS,
  NVME_CMBSZ_WDS,
  NVME_CMD_READ,
  NVME_CMD_WRITE,
  NVME_REG_ACQ,
  NVME_REG_AQA,
  NVME_REG_ASQ,
  NVME_REG_CAP,
  NVME_REG_CC,
  NVME_REG_CMBLOC,
  NVME_REG_CMBMSC,
  NVME_REG_CMBSZ,
  NVME_REG_CSTS,
  NVME_REG_DBS,
  NVME_REG_VS,
  NVME_SC_DATA_XFER_ERROR,
  NVME_SC_DNR,
  NVME_SC_INVALID_OPCODE,
  NVME_SC_LBA_RANGE,
  NVME_SC_PRP_INVALID_OFFSET,
  NVME_SC_SGL_INVALID_LAST,
  NVME_SGL_FMT_DATA_DESC,
  NVME_SGL_FMT_LAST_SEG_DESC,
  NVME_SGL_FMT_SEG_DESC,
} from './nvme-defs.js';
import type { NvmeHwPort } from './pci.js';

/** What a DMA of the controller is for (reports separate data from queue and descriptor traffic). */
export type CtrlDmaPurpose = 'sqe' | 'cqe' | 'prp-list' | 'sgl' | 'identify' | 'data';

/** One DMA of the controller: read fills `buf` from `addr`, write stores `buf` there. */
export type CtrlDma = (
  kind: 'read' | 'write',
  addr: bigint,
  buf: Uint8Array,
  purpose: CtrlDmaPurpose,
  done: (ok: boolean) => void,
) => void;

export interface NvmeTestCtrlOptions {
  readonly schedule: (delayNs: number, fn: () => void) => void;
  readonly dma: CtrlDma;
  /** Name for messages. */
  readonly name?: string | undefined;
  /** Namespace size in bytes and LBA data size shift (9 or 12). */
  readonly nsBytes: number;
  readonly lbaShift?: number | undefined;
  /** MDTS (0: no limit). */
  readonly mdts?: number | undefined;
  readonly sgls?: boolean | undefined;
  /** A CMB in BAR `bar`, `sizeBytes` (a multiple of 1 MiB), readable and writable (RDS|WDS). */
  readonly cmb?:
    | { readonly bar: number; readonly sizeBytes: number; readonly offsetMiB?: number }
    | undefined;
  /** Time a command takes inside the controller. */
  readonly latencyNs?: number | undefined;
}

interface Queue {
  base: bigint;
  depth: number;
  head: number;
  tail: number;
  cqid: number;
  vector: number;
  phase: number;
  busy: boolean;
}

const u64 = (b: Uint8Array, off: number): bigint =>
  new DataView(b.buffer, b.byteOffset).getBigUint64(off, true);
const u32 = (b: Uint8Array, off: number): number => new DataView(b.buffer, b.byteOffset).getUint32(off, true);

export class NvmeTestCtrl {
  /** The namespace's blocks. */
  readonly ns: SparseMemory;
  readonly lbaShift: number;
  cc = 0;
  csts = 0;
  aqa = 0;
  asq = 0n;
  acq = 0n;
  cmbmsc = 0n;
  readonly sqs = new Map<number, Queue>();
  readonly cqs = new Map<number, Queue>();
  readonly irqs = new Map<number, () => void>();
  readonly commands: { opcode: number; qid: number; status: number }[] = [];
  private readonly o: NvmeTestCtrlOptions;

  constructor(o: NvmeTestCtrlOptions) {
    this.o = o;
    this.ns = new SparseMemory(o.name ?? 'namespace', 'ram', bytes(o.nsBytes));
    this.lbaShift = o.lbaShift ?? 9;
  }

  /** CAP: MQES 1023, TO 1 (500 ms), DSTRD 0, CSS NVM, MPSMIN 0, CMBS when a CMB exists. */
  get cap(): bigint {
    return 1023n | (1n << 24n) | (1n << 37n) | (this.o.cmb ? 1n << 57n : 0n);
  }

  /** The driver's view of the registers and interrupts. */
  port(): NvmeHwPort {
    return {
      read32: (off) => this.read(off),
      write32: (off, v) => this.write(off, BigInt(v >>> 0)),
      read64: (off) =>
        off === NVME_REG_CAP ? this.cap : BigInt(this.read(off)) | (BigInt(this.read(off + 4)) << 32n),
      write64: (off, v) => this.write(off, v),
      requestIrq: (vector, h) => this.irqs.set(vector, h),
    };
  }

  private read(off: number): number {
    switch (off) {
      case NVME_REG_VS:
        return 0x10400;
      case NVME_REG_CC:
        return this.cc;
      case NVME_REG_CSTS:
        return this.csts;
      case NVME_REG_CMBLOC:
        return this.o.cmb ? this.o.cmb.bar | ((this.o.cmb.offsetMiB ?? 0) << 12) : 0;
      case NVME_REG_CMBSZ:
        // SZU 2: 1 MiB units.
        return this.o.cmb
          ? NVME_CMBSZ_WDS | NVME_CMBSZ_RDS | (2 << 8) | ((this.o.cmb.sizeBytes >> 20) << 12)
          : 0;
      default:
        return 0;
    }
  }

  private write(off: number, v: bigint): void {
    if (off >= NVME_REG_DBS) return this.doorbell((off - NVME_REG_DBS) >> 2, Number(v));
    if (off === NVME_REG_CC) {
      const was = this.cc & 1;
      this.cc = Number(v);
      if ((this.cc & 1) !== was) this.o.schedule(1000, () => this.enable((this.cc & 1) === 1));
    } else if (off === NVME_REG_AQA) this.aqa = Number(v);
    else if (off === NVME_REG_ASQ) this.asq = v;
    else if (off === NVME_REG_ACQ) this.acq = v;
    else if (off === NVME_REG_CMBMSC) this.cmbmsc = v;
  }

  private enable(on: boolean): void {
    if (!on) {
      this.csts = 0;
      this.sqs.clear();
      this.cqs.clear();
      return;
    }
    const q = (base: bigint, depth: number): Queue => ({
      base,
      depth,
      head: 0,
      tail: 0,
      cqid: 0,
      vector: 0,
      phase: 1,
      busy: false,
    });
    this.sqs.set(0, q(this.asq, (this.aqa & 0xfff) + 1));
    this.cqs.set(0, q(this.acq, ((this.aqa >> 16) & 0xfff) + 1));
    this.csts = 1;
  }

  private doorbell(idx: number, v: number): void {
    const qid = idx >> 1;
    if (idx & 1) {
      const cq = this.cqs.get(qid);
      if (cq) cq.head = v;
      return;
    }
    const sq = this.sqs.get(qid);
    if (!sq) return;
    sq.tail = v;
    this.kick(qid, sq);
  }

  private kick(qid: number, sq: Queue): void {
    if (sq.busy || sq.head === sq.tail) return;
    sq.busy = true;
    const sqe = new Uint8Array(64);
    this.o.dma('read', sq.base + BigInt(sq.head * 64), sqe, 'sqe', (ok) => {
      sq.head = (sq.head + 1) % sq.depth;
      sq.busy = false;
      if (!ok) this.complete(qid, sq, sqe, NVME_SC_DATA_XFER_ERROR, 0);
      else this.o.schedule(this.o.latencyNs ?? 10_000, () => this.execute(qid, sq, sqe));
      this.kick(qid, sq);
    });
  }

  private complete(qid: number, sq: Queue, sqe: Uint8Array, status: number, result: number): void {
    this.commands.push({ opcode: sqe[0]!, qid, status });
    const cq = this.cqs.get(sq.cqid);
    if (!cq) return;
    const cqe = new Uint8Array(16);
    const v = new DataView(cqe.buffer);
    v.setUint32(0, result, true);
    v.setUint16(8, sq.head, true);
    v.setUint16(10, qid, true);
    cqe[12] = sqe[2]!;
    cqe[13] = sqe[3]!;
    v.setUint16(14, (status << 1) | cq.phase, true);
    const at = cq.base + BigInt(cq.tail * 16);
    if (++cq.tail === cq.depth) {
      cq.tail = 0;
      cq.phase ^= 1;
    }
    this.o.dma('write', at, cqe, 'cqe', () => this.irqs.get(cq.vector)?.());
  }

  private execute(qid: number, sq: Queue, sqe: Uint8Array): void {
    const done = (status: number, result = 0): void => this.complete(qid, sq, sqe, status, result);
    const op = sqe[0]!;
    if (qid === 0) return this.admin(sqe, done);
    if (op !== NVME_CMD_READ && op !== NVME_CMD_WRITE) return done(NVME_SC_INVALID_OPCODE | NVME_SC_DNR);
    const slba = Number(u64(sqe, 40));
    const nlb = (u32(sqe, 48) & 0xffff) + 1;
    const off = slba << this.lbaShift;
    const len = nlb << this.lbaShift;
    if (off + len > this.ns.sizeBytes) return done(NVME_SC_LBA_RANGE | NVME_SC_DNR);
    this.dataSegments(sqe, len, (segs, st) => {
      if (segs === null) return done(st);
      this.moveData(op === NVME_CMD_READ ? 'write' : 'read', segs, off, done);
    });
  }

  /**
   * Run the data DMAs one after another; the first failure fails the command. A Read writes host
   * memory from the namespace; a Write stores what it read into the namespace piece by piece.
   */
  private moveData(
    kind: 'read' | 'write',
    segs: [bigint, number][],
    nsOff: number,
    done: (st: number) => void,
  ): void {
    let i = 0;
    let pos = nsOff;
    const next = (ok: boolean): void => {
      if (!ok) return done(NVME_SC_DATA_XFER_ERROR);
      const s = segs[i++];
      if (!s) return done(0);
      const at = pos;
      pos += s[1];
      if (kind === 'write') return this.o.dma('write', s[0], this.ns.readBytes(at, s[1]), 'data', next);
      const buf = new Uint8Array(s[1]);
      this.o.dma('read', s[0], buf, 'data', (good) => {
        if (good) this.ns.write(at, buf);
        next(good);
      });
    };
    next(true);
  }

  /** Decode the data pointer into (address, length) pieces: PRPs or SGL descriptors. */
  private dataSegments(
    sqe: Uint8Array,
    len: number,
    cb: (segs: [bigint, number][] | null, st: number) => void,
  ): void {
    const psdt = (sqe[1]! >> 6) & 3;
    if (psdt !== 0) return this.sglSegments(sqe.subarray(24, 40), len, cb);
    const prp1 = u64(sqe, 24);
    const prp2 = u64(sqe, 32);
    const first = Math.min(len, PAGE_SIZE - Number(prp1 & 0xfffn));
    const segs: [bigint, number][] = [[prp1, first]];
    let left = len - first;
    if (left === 0) return cb(segs, 0);
    if (left <= PAGE_SIZE) {
      if ((prp2 & 0xfffn) !== 0n) return cb(null, NVME_SC_PRP_INVALID_OFFSET | NVME_SC_DNR);
      segs.push([prp2, left]);
      return cb(segs, 0);
    }
    // A PRP list runs from its (qword-aligned) pointer to the end of that memory page; the last
    // entry of the page points to the next list when more data remains.
    const walk = (list: bigint): void => {
      const page = new Uint8Array(PAGE_SIZE - Number(list & 0xfffn));
      this.o.dma('read', list, page, 'prp-list', (ok) => {
        if (!ok) return cb(null, NVME_SC_DATA_XFER_ERROR);
        const n = page.length / 8;
        for (let i = 0; i < n && left > 0; i++) {
          const e = u64(page, i * 8);
          if (i === n - 1 && left > PAGE_SIZE) return walk(e);
          if ((e & 0xfffn) !== 0n) return cb(null, NVME_SC_PRP_INVALID_OFFSET | NVME_SC_DNR);
          const len = Math.min(left, PAGE_SIZE);
          segs.push([e, len]);
          left -= len;
        }
        cb(segs, 0);
      });
    };
    walk(prp2);
  }

  private sglSegments(
    desc: Uint8Array,
    len: number,
    cb: (segs: [bigint, number][] | null, st: number) => void,
  ): void {
    const segs: [bigint, number][] = [];
    const visit = (d: Uint8Array): void => {
      const type = d[15]! >> 4;
      if (type === NVME_SGL_FMT_DATA_DESC) {
        segs.push([u64(d, 0), u32(d, 8)]);
        return cb(segs, 0);
      }
      if (type !== NVME_SGL_FMT_LAST_SEG_DESC && type !== NVME_SGL_FMT_SEG_DESC)
        return cb(null, NVME_SC_SGL_INVALID_LAST | NVME_SC_DNR);
      const list = new Uint8Array(u32(d, 8));
      this.o.dma('read', u64(d, 0), list, 'sgl', (ok) => {
        if (!ok) return cb(null, NVME_SC_DATA_XFER_ERROR);
        for (let o = 0; o < list.length; o += 16) {
          const e = list.subarray(o, o + 16);
          if (e[15]! >> 4 === NVME_SGL_FMT_DATA_DESC) segs.push([u64(e, 0), u32(e, 8)]);
          else if (o + 16 === list.length) return visit(e.slice());
          else return cb(null, NVME_SC_SGL_INVALID_LAST | NVME_SC_DNR);
        }
        const total = segs.reduce((s, x) => s + x[1], 0);
        cb(total >= len ? segs : null, total >= len ? 0 : NVME_SC_SGL_INVALID_LAST | NVME_SC_DNR);
      });
    };
    visit(desc.slice());
  }

  private admin(sqe: Uint8Array, done: (st: number, result?: number) => void): void {
    const op = sqe[0]!;
    const cdw10 = u32(sqe, 40);
    const cdw11 = u32(sqe, 44);
    if (op === NVME_ADMIN_IDENTIFY) {
      const data = new Uint8Array(4096);
      const v = new DataView(data.buffer);
      if ((cdw10 & 0xff) === 1) {
        data[77] = this.o.mdts ?? 5;
        v.setUint32(516, 1, true);
        v.setUint32(536, this.o.sgls === false ? 0 : 1, true);
      } else {
        v.setBigUint64(0, BigInt(this.ns.sizeBytes >> this.lbaShift), true);
        v.setUint32(128, this.lbaShift << 16, true);
      }
      return this.o.dma('write', u64(sqe, 24), data, 'identify', (ok) =>
        done(ok ? 0 : NVME_SC_DATA_XFER_ERROR),
      );
    }
    if (op === NVME_ADMIN_SET_FEATURES) return done(0, 0);
    const qid = cdw10 & 0xffff;
    const depth = (cdw10 >>> 16) + 1;
    const q: Queue = {
      base: u64(sqe, 24),
      depth,
      head: 0,
      tail: 0,
      cqid: cdw11 >>> 16,
      vector: cdw11 >>> 16,
      phase: 1,
      busy: false,
    };
    if (op === NVME_ADMIN_CREATE_CQ) this.cqs.set(qid, q);
    else if (op === NVME_ADMIN_CREATE_SQ) this.sqs.set(qid, q);
    else return done(NVME_SC_INVALID_OPCODE | NVME_SC_DNR);
    done(0);
  }
}
