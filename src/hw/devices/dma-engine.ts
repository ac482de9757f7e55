// A generic DMA engine: copies from bus address A to bus address B in chunks, with a fixed number of
// chunks in flight (its queue depth), descriptors served in order. Each chunk is a DMA read of the
// source into the engine's staging buffer and then a DMA write to the destination, both through the
// fabric; an address inside one of the engine's local windows (a GPU's own VRAM) is reached without
// the bus. Mirrors no kernel file: it is the hardware a dmaengine driver (drivers/dma/) programs.
//
//   descriptors ──> chunks ──> read channel (one at a time) ──> staging ──> write channel (one at a time)
//                              up to queueDepth chunks in flight: chunk i is written while i+1 is read
//
// A chunk that is refused (IOMMU fault, unsupported request ...) stops the descriptor: no further
// chunks start, those in flight finish, and the descriptor completes with the reason and the bytes
// that did arrive.

import { type Bytes, bytes, type DmaAddr, dmaAddr, hex } from '../addr.js';
import { type DevBuffer, type DmaOutcome, fabricDma } from '../fabric/data-path.js';
import type { Fabric } from '../fabric/fabric.js';
import type { RefusalReason } from '../fabric/routing.js';
import type { IommuFault } from '../iommu/iommu.js';
import { copyMemory, SparseMemory } from '../memory/sparse-memory.js';
import type { PciFunction } from '../pci.js';
import { ChunkPipeline } from './chunk-pipeline.js';
import type { Await } from './device-task.js';

/** Bus addresses the engine reaches without the fabric: its own device memory. */
export interface LocalWindow {
  readonly busBase: bigint;
  readonly mem: SparseMemory;
}

export interface DmaEngineOptions {
  readonly name?: string;
  readonly chunkBytes?: number;
  readonly queueDepth?: number;
  /** The engine's own rate limit per chunk transfer, GB/s; none by default. */
  readonly capGBps?: number;
  readonly local?: readonly LocalWindow[];
}

export interface CopyDescriptor {
  readonly src: DmaAddr;
  readonly dst: DmaAddr;
  readonly len: Bytes;
  readonly label?: string;
}

export type CopyResult =
  | { readonly ok: true; readonly bytes: number; readonly startNs: number; readonly endNs: number }
  | {
      readonly ok: false;
      readonly reason: RefusalReason;
      readonly detail: string;
      readonly fault?: IommuFault;
      /** Bytes of chunks that completed before the descriptor stopped. */
      readonly bytesDone: number;
      readonly startNs: number;
      readonly endNs: number;
    };

interface Job {
  readonly d: CopyDescriptor;
  readonly len: number;
  readonly done: (r: CopyResult) => void;
  readonly startNs: number;
  next: number;
  inflight: number;
  bytesDone: number;
  failure: Extract<DmaOutcome, { ok: false }> | null;
}

export const DEFAULT_CHUNK_BYTES = 1 << 20;
export const DEFAULT_QUEUE_DEPTH = 4;

interface Chunk {
  readonly job: Job;
  readonly off: number;
  readonly n: number;
}

type ChunkError = Extract<DmaOutcome, { ok: false }> | 'cancelled';

export class DmaEngine {
  readonly fab: Fabric;
  readonly fn: PciFunction;
  readonly name: string;
  readonly chunkBytes: number;
  readonly queueDepth: number;
  readonly local: readonly LocalWindow[];
  readonly stats = { descriptors: 0, bytes: 0, failures: 0, chunks: 0 };
  private readonly cap: number | undefined;
  private readonly staging: SparseMemory;
  private readonly jobs: Job[] = [];
  private readonly pipe: ChunkPipeline<Chunk, ChunkError>;

  constructor(fab: Fabric, fn: PciFunction, o: DmaEngineOptions = {}) {
    this.fab = fab;
    this.fn = fn;
    this.name = o.name ?? `${fn.name} dma`;
    this.chunkBytes = o.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.queueDepth = o.queueDepth ?? DEFAULT_QUEUE_DEPTH;
    if (!(this.chunkBytes > 0)) throw new RangeError(`${this.name}: bad chunk size ${this.chunkBytes}`);
    this.cap = o.capGBps;
    this.local = o.local ?? [];
    this.staging = new SparseMemory(`${this.name} staging`, 'bar', bytes(this.chunkBytes * this.queueDepth));
    this.pipe = new ChunkPipeline<Chunk, ChunkError>(
      this.queueDepth,
      [(c, slot) => this.readStage(c, slot), (c, slot) => this.writeStage(c, slot)],
      () => this.nextChunk(),
      (c, err) => this.chunkDone(c, err),
    );
  }

  /** Descriptors not yet completed. */
  get pending(): number {
    return this.jobs.length;
  }

  /**
   * Queue a copy of `len` bytes from `src` to `dst` (bus addresses or IOVAs, as this device's DMA
   * sees them); `done` runs from the event loop when it finishes.
   * @returns nothing; the result goes to `done`: ok, or the first chunk's refusal (route() reasons).
   */
  submit(d: CopyDescriptor, done: (r: CopyResult) => void): void {
    this.stats.descriptors++;
    const job: Job = {
      d,
      len: Number(d.len),
      done,
      startNs: this.fab.clock.nowNs,
      next: 0,
      inflight: 0,
      bytesDone: 0,
      failure: null,
    };
    this.jobs.push(job);
    if (job.len === 0) this.fab.clock.schedule(0, () => this.maybeFinish(job));
    else this.pipe.pump();
  }

  /** The local window holding [addr, addr + len), if the whole range is inside one. */
  localAt(addr: bigint, len: number): { mem: SparseMemory; offset: number } | null {
    for (const w of this.local) {
      const off = addr - w.busBase;
      if (off >= 0n && off + BigInt(len) <= BigInt(w.mem.sizeBytes))
        return { mem: w.mem, offset: Number(off) };
    }
    return null;
  }

  private nextChunk(): Chunk | null {
    const job = this.jobs.find((j) => j.failure === null && j.next < j.len);
    if (!job) return null;
    const off = job.next;
    const n = Math.min(this.chunkBytes, job.len - off);
    job.next += n;
    job.inflight++;
    return { job, off, n };
  }

  private staged(slot: number): DevBuffer {
    return { kind: 'memory', mem: this.staging, offset: slot * this.chunkBytes };
  }

  /** Read channel: the source into staging (or straight into local destination memory). */
  private readStage(c: Chunk, slot: number): Await<ChunkError | null> | null {
    if (c.job.failure) return cancelled;
    const src = c.job.d.src + BigInt(c.off);
    if (this.localAt(src, c.n)) return null;
    const dl = this.localAt(c.job.d.dst + BigInt(c.off), c.n);
    const into: DevBuffer = dl ? { kind: 'memory', mem: dl.mem, offset: dl.offset } : this.staged(slot);
    return this.dma('read', src, c.n, into);
  }

  /** Write channel: staging (or local source memory) out to the destination. */
  private writeStage(c: Chunk, slot: number): Await<ChunkError | null> | null {
    if (c.job.failure) return cancelled;
    const sl = this.localAt(c.job.d.src + BigInt(c.off), c.n);
    const dst = c.job.d.dst + BigInt(c.off);
    const dl = this.localAt(dst, c.n);
    if (dl && !sl) return null; // the read already landed in local memory
    if (dl && sl) {
      copyMemory(dl.mem, dl.offset, sl.mem, sl.offset, c.n);
      return null;
    }
    return this.dma(
      'write',
      dst,
      c.n,
      sl ? { kind: 'memory', mem: sl.mem, offset: sl.offset } : this.staged(slot),
    );
  }

  private chunkDone(c: Chunk, err: ChunkError | null): void {
    const job = c.job;
    job.inflight--;
    this.stats.chunks++;
    if (err === null) job.bytesDone += c.n;
    else if (err !== 'cancelled') job.failure ??= err;
    this.maybeFinish(job);
  }

  private dma(kind: 'read' | 'write', addr: bigint, n: number, local: DevBuffer): Await<ChunkError | null> {
    return {
      start: (resume) =>
        fabricDma(
          this.fab,
          {
            requester: this.fn,
            kind,
            addr: dmaAddr(addr),
            len: bytes(n),
            local,
            label: `${this.name} ${kind} ${hex(addr)}`,
            ...(this.cap !== undefined ? { capBytesPerNs: this.cap } : {}),
          },
          (o) => resume(o.ok ? null : o),
        ),
    };
  }

  private maybeFinish(job: Job): void {
    if (job.inflight > 0 || (job.failure === null && job.next < job.len)) return;
    const i = this.jobs.indexOf(job);
    if (i < 0) return;
    this.jobs.splice(i, 1);
    const endNs = this.fab.clock.nowNs;
    const f = job.failure;
    if (f) {
      this.stats.failures++;
      const base = {
        ok: false as const,
        reason: f.reason,
        detail: f.detail,
        bytesDone: job.bytesDone,
        startNs: job.startNs,
        endNs,
      };
      job.done(f.fault ? { ...base, fault: f.fault } : base);
      return;
    }
    this.stats.bytes += job.len;
    job.done({ ok: true, bytes: job.len, startNs: job.startNs, endNs });
  }
}

const cancelled: Await<ChunkError | null> = { start: (resume) => resume('cancelled') };
