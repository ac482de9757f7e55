// An RDMA-capable NIC: work requests from a send queue move data between memory reachable by this NIC
// and memory reachable by the NIC at the other end of its wire (itself, in loopback), with RDMA WRITE
// and RDMA READ semantics, and report work completions. Both ends' DMA goes through the fabric, so
// a buffer may be host RAM or a peer's BAR (GPUDirect RDMA, a CMB). Mirrors no kernel file; it is the
// hardware under drivers/infiniband (ib_post_send / ib_poll_cq).
//
//   RDMA WRITE at A:  A reads local ──wire A->B──> B writes remote
//   RDMA READ  at A:  B reads remote ──wire B->A──> A writes local
//
// A refused DMA on the initiator is a local protection error, on the responder a remote access error
// (IBV_WC_LOC_PROT_ERR / IBV_WC_REM_ACCESS_ERR); the work request stops at the first bad chunk.

import { type Bytes, bytes, type DmaAddr, dmaAddr, hex } from '../addr.js';
import type { DevBuffer } from '../fabric/data-path.js';
import type { Fabric } from '../fabric/fabric.js';
import type { BwResource } from '../fabric/flow-seam.js';
import type { RefusalReason } from '../fabric/routing.js';
import { SparseMemory } from '../memory/sparse-memory.js';
import type { PciFunction } from '../pci.js';
import { ChunkPipeline } from './chunk-pipeline.js';
import { type Await, dmaWait } from './device-task.js';

export type NicOpcode = 'rdma-write' | 'rdma-read';
export type WcStatus = 'success' | 'local-protection-error' | 'remote-access-error';

export interface WorkRequest {
  readonly wrId: number;
  readonly opcode: NicOpcode;
  /** Address of the local buffer as this NIC's DMA sees it. */
  readonly localAddr: DmaAddr;
  /** Address of the remote buffer as the far NIC's DMA sees it. */
  readonly remoteAddr: DmaAddr;
  readonly len: Bytes;
}

export interface WorkCompletion {
  readonly wrId: number;
  readonly opcode: NicOpcode;
  readonly status: WcStatus;
  readonly bytes: number;
  readonly reason?: RefusalReason;
  readonly startNs: number;
  readonly endNs: number;
}

export interface NicOptions {
  /** Port rate per direction in GB/s (default 25: a 200 Gb/s port) and one-way wire latency. */
  readonly portGBps?: number;
  readonly wireLatencyNs?: number;
  readonly chunkBytes?: number;
  /** Chunks in flight across the send queue. */
  readonly queueDepth?: number;
}

interface Wr {
  readonly wr: WorkRequest;
  readonly len: number;
  readonly startNs: number;
  next: number;
  inflight: number;
  moved: number;
  error: ChunkError | null;
}

interface Chunk {
  readonly w: Wr;
  readonly off: number;
  readonly n: number;
}

type ChunkError =
  | { readonly status: Exclude<WcStatus, 'success'>; readonly reason: RefusalReason }
  | 'cancelled';

export class Nic {
  readonly fab: Fabric;
  readonly fn: PciFunction;
  /** This NIC's transmit direction on the wire. */
  readonly tx: BwResource;
  readonly chunkBytes: number;
  /** Completions not yet polled. */
  readonly cq: WorkCompletion[] = [];
  onCompletion: ((wc: WorkCompletion) => void) | null = null;
  private peer: Nic = this;
  private readonly sq: Wr[] = [];
  private readonly staging: SparseMemory;
  private readonly pipe: ChunkPipeline<Chunk, ChunkError>;

  constructor(fab: Fabric, fn: PciFunction, o: NicOptions = {}) {
    this.fab = fab;
    this.fn = fn;
    this.chunkBytes = o.chunkBytes ?? 256 * 1024;
    const depth = o.queueDepth ?? 8;
    this.tx = fab.sim.flows.addResource(`${fn.name} port tx`, o.portGBps ?? 25, o.wireLatencyNs ?? 500);
    this.staging = new SparseMemory(`${fn.name} nic staging`, 'bar', bytes(this.chunkBytes * depth));
    this.pipe = new ChunkPipeline<Chunk, ChunkError>(
      depth,
      [(c, slot) => this.readStage(c, slot), (c) => this.wireStage(c), (c, slot) => this.writeStage(c, slot)],
      () => this.nextChunk(),
      (c, err) => this.chunkDone(c, err),
    );
  }

  /** Cable this NIC to `other` (both ways). A NIC not connected loops back to itself. */
  connect(other: Nic): void {
    this.peer = other;
    other.peer = this;
  }

  /** `ib_post_send`: queue a work request; its completion goes to `cq` (and `onCompletion`). */
  postSend(wr: WorkRequest): void {
    this.sq.push({
      wr,
      len: Number(wr.len),
      startNs: this.fab.clock.nowNs,
      next: 0,
      inflight: 0,
      moved: 0,
      error: null,
    });
    if (wr.len === 0n) this.fab.clock.schedule(0, () => this.retire());
    else this.pipe.pump();
  }

  /** `ib_poll_cq`: take up to `max` completions. */
  pollCq(max = Number.POSITIVE_INFINITY): WorkCompletion[] {
    return this.cq.splice(0, Math.min(max, this.cq.length));
  }

  private nextChunk(): Chunk | null {
    const w = this.sq.find((x) => x.error === null && x.next < x.len);
    if (!w) return null;
    const off = w.next;
    const n = Math.min(this.chunkBytes, w.len - off);
    w.next += n;
    w.inflight++;
    return { w, off, n };
  }

  /** Who reads first and who writes last: RDMA WRITE reads here, RDMA READ reads at the peer. */
  private ends(c: Chunk): { reader: Nic; from: DmaAddr; writer: Nic; to: DmaAddr } {
    const local = dmaAddr(c.w.wr.localAddr + BigInt(c.off));
    const remote = dmaAddr(c.w.wr.remoteAddr + BigInt(c.off));
    return c.w.wr.opcode === 'rdma-write'
      ? { reader: this, from: local, writer: this.peer, to: remote }
      : { reader: this.peer, from: remote, writer: this, to: local };
  }

  private buf(slot: number): DevBuffer {
    return { kind: 'memory', mem: this.staging, offset: slot * this.chunkBytes };
  }

  private readStage(c: Chunk, slot: number): Await<ChunkError | null> {
    if (c.w.error) return cancelled;
    const { reader, from } = this.ends(c);
    return this.dmaBy(reader, 'read', from, c.n, this.buf(slot));
  }

  private wireStage(c: Chunk): Await<ChunkError | null> {
    const { reader } = this.ends(c);
    return {
      start: (resume) =>
        void this.fab.sim.flows.startFlow({
          path: [reader.tx],
          size: bytes(c.n),
          onComplete: () => resume(null),
        }),
    };
  }

  private writeStage(c: Chunk, slot: number): Await<ChunkError | null> {
    if (c.w.error) return cancelled;
    const { writer, to } = this.ends(c);
    return this.dmaBy(writer, 'write', to, c.n, this.buf(slot));
  }

  /** A DMA by `nic` (this one or the peer); a refusal maps to the side it happened on. */
  private dmaBy(
    nic: Nic,
    kind: 'read' | 'write',
    addr: DmaAddr,
    n: number,
    local: DevBuffer,
  ): Await<ChunkError | null> {
    const status = nic === this ? 'local-protection-error' : 'remote-access-error';
    return {
      start: (resume) =>
        dmaWait(this.fab, {
          requester: nic.fn,
          kind,
          addr,
          len: bytes(n),
          local,
          label: `${nic.fn.name} rdma ${kind} ${hex(addr)}`,
        }).start((o) => resume(o.ok ? null : { status, reason: o.reason })),
    };
  }

  private chunkDone(c: Chunk, err: ChunkError | null): void {
    c.w.inflight--;
    if (err === null) c.w.moved += c.n;
    else if (err !== 'cancelled') c.w.error ??= err;
    this.retire();
  }

  /** Complete finished work requests in posting order. */
  private retire(): void {
    while (this.sq.length > 0) {
      const w = this.sq[0]!;
      if (w.inflight > 0 || (w.error === null && w.next < w.len)) return;
      this.sq.shift();
      const e = w.error === 'cancelled' ? null : w.error;
      const wc: WorkCompletion = {
        wrId: w.wr.wrId,
        opcode: w.wr.opcode,
        status: e?.status ?? 'success',
        bytes: w.moved,
        ...(e ? { reason: e.reason } : {}),
        startNs: w.startNs,
        endNs: this.fab.clock.nowNs,
      };
      this.cq.push(wc);
      this.onCompletion?.(wc);
    }
  }
}

const cancelled: Await<ChunkError | null> = { start: (resume) => resume('cancelled') };
