// An NVMe controller on the fabric: registers and doorbells in BAR0, an admin queue and I/O queues
// in host memory (or in its CMB), commands fetched and data moved only by DMA through the fabric, one
// namespace backed by sparse storage, and a Controller Memory Buffer in another BAR that peers can
// read and write. Mirrors the device that drivers/nvme/host/pci.c drives (nvme_enable_ctrl,
// nvme_map_cmb, nvme_submit_cmd / nvme_process_cq); the register layout is nvme-regs.ts.
//
//   host writes SQE to memory ── rings SQ tail doorbell ──> controller fetches SQEs (DMA read)
//     ──> command: PRP/SGL walk (DMA reads of lists), data (DMA), media time
//     ──> CQE with phase tag (DMA write) ──> interrupt (MSI-X vector of the CQ)
//   host consumes CQEs ── rings CQ head doorbell ──> room for more completions
//
// Not modelled: multiple namespaces, metadata, fused commands, arbitration weights, the persistent
// memory region, async events ever completing (AERs stay outstanding, as on a healthy drive).

import { bytes, dmaAddr, hex } from '../addr.js';
import type { MmioHandler } from '../fabric/address-map.js';
import type { DevBuffer } from '../fabric/data-path.js';
import type { Fabric } from '../fabric/fabric.js';
import type { BwResource } from '../fabric/flow-seam.js';
import { copyMemory, SparseMemory } from '../memory/sparse-memory.js';
import type { PciBar, PciFunction } from '../pci.js';
import { type Await, all, type DevTask, delay, dmaWait, runDevTask, wait } from './device-task.js';
import { nvmeAdmin } from './nvme-admin.js';
import { nvmeBar0 } from './nvme-bar0.js';
import { nvmeIo } from './nvme-io.js';
import { type DataSeg, type DptrResult, nvmePrpSegments, nvmeSglSegments } from './nvme-prp-sgl.js';
import {
  cqHasRoom,
  cqTakeSlot,
  decodeSqe,
  encodeCqe,
  type NvmeCommand,
  type NvmeCq,
  type NvmeSq,
  type PendingCqe,
  sqContiguousPending,
} from './nvme-queues.js';
import * as R from './nvme-regs.js';
import { type NvmeStatus, nvmeStatus } from './nvme-regs.js';

export interface NvmeTiming {
  /** CC.EN 0 -> 1 until CSTS.RDY, and back. */
  readonly enableNs: number;
  /** Firmware time per command before it acts. */
  readonly commandNs: number;
  readonly mediaReadNs: number;
  readonly mediaWriteNs: number;
  /** Flash bandwidth shared by all commands, GB/s. */
  readonly mediaGBps: number;
}

export const DEFAULT_NVME_TIMING: NvmeTiming = {
  enableNs: 2000,
  commandNs: 1000,
  mediaReadNs: 20000,
  mediaWriteNs: 10000,
  mediaGBps: 7,
};

export interface NvmeCmbOptions {
  readonly bar: number;
  readonly size: bigint;
  /** Offset of the CMB inside the BAR (a multiple of the size unit). */
  readonly offset?: bigint;
  /** CMBSZ support bits; default SQS | WDS | RDS (what makes Linux publish it as P2P memory). */
  readonly flags?: number;
}

export interface NvmeOptions {
  readonly lbaBytes?: 512 | 4096;
  readonly namespaceBytes?: bigint;
  /** Maximum data transfer size, as a power of two of the minimum page size (MDTS). */
  readonly mdts?: number;
  /** Entries a queue may have (CAP.MQES + 1). */
  readonly maxQueueEntries?: number;
  readonly maxIoQueues?: number;
  /** MSI-X vectors (the CQ interrupt vectors that Create I/O CQ accepts). */
  readonly vectors?: number;
  /** The CMB; default from the machine's cmb hint; null for none. */
  readonly cmb?: NvmeCmbOptions | null;
  /** CAP.CMBS (NVMe 1.4): CMBLOC/CMBSZ read 0 until CMBMSC.CRE, and the CMB answers at CMBMSC.CBA. */
  readonly cmbMsc?: boolean;
  readonly timing?: Partial<NvmeTiming>;
  readonly serial?: string;
  readonly model?: string;
}

export interface NvmeResult {
  readonly status: NvmeStatus;
  readonly result?: number;
}

export interface NvmeCmb {
  readonly bar: PciBar;
  readonly offset: number;
  readonly size: number;
  readonly mem: SparseMemory;
  readonly flags: number;
  readonly szu: number;
}

const MAX_FETCH_BATCH = 64;

/** Size unit SZU able to express both `size` and `offset` exactly in 20 bits. */
function cmbSizeUnit(size: bigint, offset: bigint): number {
  for (let szu = 0; szu <= 6; szu++) {
    const u = R.nvmeCmbSizeUnit(szu);
    if (size % u === 0n && offset % u === 0n && size / u <= 0xfffffn) return szu;
  }
  throw new RangeError(`CMB of ${size} bytes at ${offset}: no size unit expresses it`);
}

export class NvmeController {
  readonly fab: Fabric;
  readonly fn: PciFunction;
  readonly timing: NvmeTiming;
  readonly lbaBytes: number;
  readonly nlb: bigint;
  /** The namespace's blocks (namespace 1). */
  readonly storage: SparseMemory;
  readonly cmb: NvmeCmb | null;
  readonly cmbMsc: boolean;
  readonly mdts: number;
  readonly mqes: number;
  readonly maxIoQueues: number;
  readonly vectors: number;
  readonly serial: string;
  readonly model: string;
  readonly media: BwResource;
  readonly sqs = new Map<number, NvmeSq>();
  readonly cqs = new Map<number, NvmeCq>();
  readonly stats = { commands: 0, errors: 0, interrupts: 0, badAccesses: 0, dataBytes: 0 };
  /** MSI-X delivery: called with the vector of a CQ that got an entry. */
  onInterrupt: ((vector: number) => void) | null = null;
  aerOutstanding = 0;
  cc = 0;
  csts = 0;
  aqa = 0;
  asq = 0n;
  acq = 0n;
  cmbmsc = 0n;
  /** @internal bumped by a controller reset: work of an older generation is dropped. */
  generation = 0;

  constructor(fab: Fabric, fn: PciFunction, o: NvmeOptions = {}) {
    this.fab = fab;
    this.fn = fn;
    this.timing = { ...DEFAULT_NVME_TIMING, ...o.timing };
    this.lbaBytes = o.lbaBytes ?? 512;
    const nsBytes = o.namespaceBytes ?? 16n << 30n;
    this.nlb = nsBytes / BigInt(this.lbaBytes);
    this.storage = new SparseMemory(`${fn.name} namespace 1`, 'ram', bytes(this.nlb * BigInt(this.lbaBytes)));
    this.mdts = o.mdts ?? 5;
    this.mqes = (o.maxQueueEntries ?? 1024) - 1;
    this.maxIoQueues = o.maxIoQueues ?? 64;
    this.vectors = o.vectors ?? 32;
    this.serial =
      o.serial ??
      `SIM${fn.addr.bus.toString(16).padStart(2, '0')}${fn.addr.devfn.toString(16).padStart(2, '0')}`;
    this.model = o.model ?? 'dmasim NVMe controller';
    this.cmbMsc = o.cmbMsc ?? true;
    this.media = fab.sim.flows.addResource(`${fn.name} media`, this.timing.mediaGBps, 0);
    const hint = fn.hints?.cmb;
    const want = o.cmb === undefined ? (hint ? { bar: hint.bar, size: hint.size } : null) : o.cmb;
    this.cmb = want ? this.makeCmb(want) : null;
    const regs = fn.bars.find((b) => b.index === 0);
    if (!regs || regs.size < 0x2000n)
      throw new Error(`${fn.name}: NVMe needs BAR0 of at least 8 KiB for registers`);
    this.mmio = nvmeBar0(this);
    fab.addressMap.attachMmio(fn, 0, this.mmio);
  }

  private makeCmb(w: NvmeCmbOptions): NvmeCmb {
    if (w.bar === 0) throw new Error(`${this.fn.name}: a CMB in BAR0 (the register BAR) is not modelled`);
    const bar = this.fn.bars.find((b) => b.index === w.bar);
    const offset = w.offset ?? 0n;
    if (!bar || offset + w.size > bar.size) throw new Error(`${this.fn.name}: CMB does not fit BAR${w.bar}`);
    const flags = w.flags ?? R.NVME_CMBSZ_SQS | R.NVME_CMBSZ_WDS | R.NVME_CMBSZ_RDS;
    const szu = cmbSizeUnit(w.size, offset);
    const mem = this.fab.addressMap.barMemory(this.fn, w.bar);
    return { bar, offset: Number(offset), size: Number(w.size), mem, flags, szu };
  }

  /** Memory page size the host chose (CC.MPS). */
  get mps(): number {
    return 4096 << ((this.cc & R.NVME_CC_MPS_MASK) >> R.NVME_CC_MPS_SHIFT);
  }

  get ready(): boolean {
    return (this.csts & R.NVME_CSTS_RDY) !== 0;
  }

  /** Where the controller sees its own CMB in the addresses of commands, or null when it does not. */
  cmbRange(): { base: bigint; end: bigint } | null {
    const c = this.cmb;
    if (!c) return null;
    if (this.cmbMsc) {
      if (!(this.cmbmsc & R.NVME_CMBMSC_CMSE)) return null;
      const base = this.cmbmsc & R.NVME_CMBMSC_CBA_MASK;
      return { base, end: base + BigInt(c.size) };
    }
    const base = c.bar.busStart + BigInt(c.offset);
    return { base, end: base + BigInt(c.size) };
  }

  /** Offset into the CMB of [addr, addr + len) if it lies wholly inside the CMB as seen by commands. */
  inCmb(addr: bigint, len: number): number | null {
    const r = this.cmbRange();
    if (!r || addr < r.base || addr + BigInt(len) > r.end) return null;
    return Number(addr - r.base) + this.cmb!.offset;
  }

  /** BAR0 as the fabric sees it (nvme-bar0.ts). */
  readonly mmio: MmioHandler;

  /** Doorbell stride is 4 bytes (CAP.DSTRD = 0): SQ y tail at 0x1000 + 8y, CQ y head at + 4. */
  /** @internal CC.EN 1 -> 0: drop every queue and all work in flight. */
  reset(): void {
    this.generation++;
    this.sqs.clear();
    this.cqs.clear();
    this.aerOutstanding = 0;
    this.csts = 0;
  }

  /** @internal a doorbell store (nvme-bar0.ts decodes the register). */
  doorbell(off: number, v: number): void {
    if (!this.ready) return;
    const idx = (off - R.NVME_REG_DBS) >> 2;
    const qid = idx >> 1;
    if (idx & 1) {
      const cq = this.cqs.get(qid);
      if (!cq || v >= cq.entries) return;
      cq.head = v;
      while (cq.waiting.length > 0 && cqHasRoom(cq)) this.writeCqe(cq, cq.waiting.shift()!);
    } else {
      const sq = this.sqs.get(qid);
      if (!sq || v >= sq.entries) return;
      sq.tail = v;
      this.fetch(sq);
    }
  }

  /** Fetch posted commands from an SQ (one DMA per contiguous batch) and start each. */
  private fetch(sq: NvmeSq): void {
    if (sq.fetching || sq.head === sq.tail) return;
    const n = Math.min(sqContiguousPending(sq), MAX_FETCH_BATCH);
    const buf = new Uint8Array(n * R.NVME_SQE_BYTES);
    const gen = this.generation;
    sq.fetching = true;
    runDevTask(
      (function* (c: NvmeController) {
        return yield* wait(c.dma('read', sq.base + BigInt(sq.head * R.NVME_SQE_BYTES), buf));
      })(this),
      (ok) => {
        if (gen !== this.generation) return;
        sq.fetching = false;
        if (!ok) {
          this.csts |= R.NVME_CSTS_CFS;
          return;
        }
        for (let i = 0; i < n; i++) {
          sq.head = (sq.head + 1) % sq.entries;
          this.start(sq, decodeSqe(buf.subarray(i * 64, (i + 1) * 64)));
        }
        this.fetch(sq);
      },
    );
  }

  private start(sq: NvmeSq, cmd: NvmeCommand): void {
    this.stats.commands++;
    const gen = this.generation;
    const self = this;
    const task = function* (): DevTask<NvmeResult | null> {
      yield* wait(delay(self.fab.clock, self.timing.commandNs));
      return sq.qid === 0 ? yield* nvmeAdmin(self, cmd) : yield* nvmeIo(self, cmd);
    };
    runDevTask(task(), (r) => {
      if (r === null || gen !== this.generation) return;
      if (r.status.sc !== 0 || r.status.sct !== 0) this.stats.errors++;
      this.post(sq, { sqid: sq.qid, cid: cmd.cid, status: r.status, result: r.result ?? 0 });
    });
  }

  private post(sq: NvmeSq, e: PendingCqe): void {
    const cq = this.cqs.get(sq.cqid);
    if (!cq) return;
    if (cq.waiting.length > 0 || !cqHasRoom(cq)) cq.waiting.push(e);
    else this.writeCqe(cq, e);
  }

  private writeCqe(cq: NvmeCq, e: PendingCqe): void {
    const { slot, phase } = cqTakeSlot(cq);
    const entry = encodeCqe(e, this.sqs.get(e.sqid)?.head ?? 0, phase);
    const gen = this.generation;
    this.dma('write', cq.base + BigInt(slot * R.NVME_CQE_BYTES), entry).start((ok) => {
      if (gen !== this.generation) return;
      if (!ok) this.csts |= R.NVME_CSTS_CFS;
      else if (cq.ien) {
        this.stats.interrupts++;
        this.onInterrupt?.(cq.iv);
      }
    });
  }

  /**
   * A DMA by this controller: its own CMB is reached internally, anything else through the fabric.
   * @returns an Await of true when the bytes moved, false when the fabric refused (any reason).
   */
  dma(kind: 'read' | 'write', addr: bigint, buf: Uint8Array): Await<boolean> {
    return this.dmaLen(kind, addr, buf.length, { kind: 'bytes', bytes: buf });
  }

  /** As dma(), for `len` bytes at a device buffer of any kind. */
  dmaLen(kind: 'read' | 'write', addr: bigint, len: number, local: DevBuffer): Await<boolean> {
    const off = this.inCmb(addr, len);
    if (off !== null) return { start: (resume) => resume(this.cmbAccess(kind, off, len, local)) };
    return {
      start: (resume) =>
        dmaWait(this.fab, {
          requester: this.fn,
          kind,
          addr: dmaAddr(addr),
          len: bytes(len),
          local,
          label: `${this.fn.name} nvme ${kind} ${hex(addr)}`,
        }).start((o) => resume(o.ok)),
    };
  }

  private cmbAccess(kind: 'read' | 'write', off: number, len: number, local: DevBuffer): boolean {
    const m = this.cmb!.mem;
    if (local.kind === 'bytes') {
      if (kind === 'read') m.read(off, local.bytes);
      else m.write(off, local.bytes);
    } else if (kind === 'read') copyMemory(local.mem, local.offset, m, off, len);
    else copyMemory(m, off, local.mem, local.offset, len);
    return true;
  }

  /** The data pieces of a command: PRPs, or SGLs (I/O queues only). */
  *dataSegments(cmd: NvmeCommand, len: number, admin: boolean): DevTask<DptrResult> {
    const psdt = cmd.flags & R.NVME_CMD_PSDT_MASK;
    const fetch = (addr: bigint, n: number): Await<Uint8Array | null> => {
      const b = new Uint8Array(n);
      return { start: (resume) => this.dma('read', addr, b).start((ok) => resume(ok ? b : null)) };
    };
    if (psdt === 0) return yield* nvmePrpSegments(fetch, cmd.prp1, cmd.prp2, len, this.mps);
    if (admin || psdt === R.NVME_CMD_PSDT_MASK)
      return { ok: false, status: nvmeStatus(R.NVME_SC_INVALID_FIELD) };
    return yield* nvmeSglSegments(fetch, cmd.dptr, len);
  }

  /** Move data between `local` (at its offset) and the pieces, all at once; false if any DMA failed. */
  *moveData(
    kind: 'read' | 'write',
    segs: readonly DataSeg[],
    local: (at: number, len: number) => DevBuffer,
  ): DevTask<boolean> {
    let at = 0;
    const waits = segs.map((s) => {
      const w = this.dmaLen(kind, s.addr, s.len, local(at, s.len));
      at += s.len;
      return w;
    });
    const results = yield* wait(all(waits));
    if (results.every(Boolean)) this.stats.dataBytes += at;
    return results.every(Boolean);
  }
}
