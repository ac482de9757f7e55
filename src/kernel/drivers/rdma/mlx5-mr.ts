// An RDMA NIC driver's dma-buf memory regions (drivers/infiniband/hw/mlx5/mr.c, odp.c, reduced): the
// MR's translation table (MTT) holds the DMA segments the NIC uses for the MR's bytes.
//
//   dynamic (ODP-like) MR:  attach with invalidate ops; map at registration; on invalidation the driver
//                           zaps the MTT, waits until the NIC has no access in flight through it (the
//                           UMR completion), and unmaps; the NIC's next access page-faults and the
//                           fault handler re-maps under the resv lock (waiting for the move's copy)
//   pinned MR:              dma_buf_pin + map once; never moves
//
//   NIC stream:  for each chunk: MTT zapped? -> page fault -> re-map (or QP error) ; translate ; post an
//                RDMA WRITE on the NIC (src: the MR's DMA address, dst: the destination) ; window of
//                chunks in flight
//
// The NIC hardware (src/hw/devices/nic.ts) knows bus addresses only, so the MR translation happens
// here, chunk by chunk, standing in for the NIC's MTT lookup.

import { bytes, type DmaAddr, dmaAddr, PAGE_SIZE_N } from '../../../hw/addr.js';
import type { Nic, WcStatus, WorkCompletion } from '../../../hw/devices/nic.js';
import { WaitQueue, waitOn } from '../../../sim/task.js';
import type { DmaBuf, DmaBufAttachment, DmaBufAttachOps } from '../../dma-buf/dma-buf.js';
import { dmaResvAssertHeld, dmaResvLock, dmaResvUnlock } from '../../dma-buf/dma-resv.js';
import type { KTaskOp } from '../../dma-buf/sched.js';
import { type KResult, ok } from '../../errno.js';
import { note, type Timeline } from '../timeline.js';
import {
  type IbDevice,
  type IbUmemDmabuf,
  ibUmemDmabufGet,
  ibUmemDmabufGetPinned,
  ibUmemDmabufMapPages,
  ibUmemDmabufRelease,
  ibUmemDmabufUnmapPages,
  type UmemSegment,
} from './umem-dmabuf.js';

export interface Mlx5Mr {
  readonly name: string;
  readonly kind: 'odp' | 'pinned';
  readonly umem: IbUmemDmabuf;
  /** The MTT: segments the NIC translates through; null while zapped. */
  mtt: readonly UmemSegment[] | null;
  /** NIC accesses through this MR in flight. */
  inflight: number;
  readonly drained: WaitQueue;
  readonly stats: { faults: number; zaps: number; remaps: number };
  readonly timeline: Timeline | null;
}

/** `mlx5_ib_dmabuf_invalidate_cb()`: zap, wait for the NIC, unmap. Resv lock held. May sleep. */
function mlx5IbDmabufInvalidateCb(attach: DmaBufAttachment): KTaskOp<void> | undefined {
  const umem = attach.importerPriv as IbUmemDmabuf;
  const mr = umem.priv as Mlx5Mr | null;
  dmaResvAssertHeld(attach.dmabuf.resv, 'mlx5_ib_dmabuf_invalidate_cb');
  if (umem.sgt === null || mr === null) return undefined;
  return (function* () {
    mr.mtt = null;
    mr.stats.zaps++;
    note(mr.timeline, mr.name, 'move_notify: MTT zapped', `${mr.inflight} access(es) in flight`);
    while (mr.inflight > 0) yield waitOn(mr.drained);
    ibUmemDmabufUnmapPages(umem);
    note(mr.timeline, mr.name, 'unmapped');
  })();
}

/** `mlx5_ib_dmabuf_attach_ops`. */
export const mlx5IbDmabufAttachOps: DmaBufAttachOps = {
  allow_peer2peer: true,
  move_notify: mlx5IbDmabufInvalidateCb,
  invalidate_mappings: mlx5IbDmabufInvalidateCb,
};

function newMr(name: string, kind: Mlx5Mr['kind'], umem: IbUmemDmabuf, timeline: Timeline | null): Mlx5Mr {
  const mr: Mlx5Mr = {
    name,
    kind,
    umem,
    mtt: null,
    inflight: 0,
    drained: new WaitQueue(),
    stats: { faults: 0, zaps: 0, remaps: 0 },
    timeline,
  };
  umem.priv = mr;
  return mr;
}

/**
 * `mlx5_ib_reg_user_mr_dmabuf()`: register [offset, offset + length) of `dmabuf` as an MR, dynamic
 * (mapped now, re-mapped after invalidations) or pinned.
 * @returns the MR; the umem errors (EINVAL ...), the attach errors (EOPNOTSUPP, ENODEV), the pin and
 *   map errors. May sleep.
 */
export function* mlx5IbRegUserMrDmabuf(
  ibdev: IbDevice,
  dmabuf: DmaBuf,
  offset: bigint,
  length: bigint,
  kind: Mlx5Mr['kind'],
  timeline: Timeline | null = null,
): KTaskOp<KResult<Mlx5Mr>> {
  const name = `${ibdev.name} mr`;
  if (kind === 'pinned') {
    const u = yield* ibUmemDmabufGetPinned(ibdev, dmabuf, offset, length, true);
    if (!u.ok) return u;
    const mr = newMr(name, kind, u.value, timeline);
    mr.mtt = u.value.segments;
    note(timeline, name, 'registered (pinned)', `${length} bytes`);
    return ok(mr);
  }
  const u = yield* ibUmemDmabufGet(ibdev, dmabuf, offset, length, true, mlx5IbDmabufAttachOps);
  if (!u.ok) return u;
  const mr = newMr(name, kind, u.value, timeline);
  yield* dmaResvLock(dmabuf.resv, null);
  const m = yield* ibUmemDmabufMapPages(u.value);
  if (m.ok) mr.mtt = u.value.segments;
  dmaResvUnlock(dmabuf.resv);
  if (!m.ok) {
    yield* ibUmemDmabufRelease(u.value);
    return m;
  }
  note(timeline, name, 'registered (dynamic)', `${length} bytes, ${mr.mtt!.length} segment(s)`);
  return ok(mr);
}

/** `mlx5_ib_dereg_mr()` of a dma-buf MR. May sleep. */
export function* mlx5IbDeregMr(mr: Mlx5Mr): KTaskOp<void> {
  mr.mtt = null;
  yield* ibUmemDmabufRelease(mr.umem);
}

/**
 * `pagefault_dmabuf_mr()`: the NIC touched a zapped MR; map again under the resv lock (waiting for a
 * move in flight) and refill the MTT. @returns ok; the map error (EINVAL once revoked, ENODEV from the
 * exporter ...), which puts the QP into the error state. May sleep.
 */
export function* pagefaultDmabufMr(mr: Mlx5Mr): KTaskOp<KResult<void>> {
  const resv = mr.umem.attach.dmabuf.resv;
  mr.stats.faults++;
  note(mr.timeline, mr.name, 'page fault');
  yield* dmaResvLock(resv, null);
  const m = yield* ibUmemDmabufMapPages(mr.umem);
  if (m.ok) {
    mr.mtt = mr.umem.segments;
    mr.stats.remaps++;
  }
  dmaResvUnlock(resv);
  note(
    mr.timeline,
    mr.name,
    m.ok ? 're-mapped' : 'page fault failed',
    m.ok ? `${mr.mtt!.length} segment(s)` : m.errno,
  );
  return m.ok ? ok(undefined) : m;
}

/** The DMA address of byte `at` of the MR and how many bytes follow contiguously. */
export function mrTranslate(mr: Mlx5Mr, at: bigint): { addr: DmaAddr; contiguous: number } | null {
  if (mr.mtt === null) return null;
  let pos = (mr.umem.address & (PAGE_SIZE_N - 1n)) + at;
  for (const s of mr.mtt) {
    if (pos < BigInt(s.len)) return { addr: dmaAddr(s.addr + pos), contiguous: s.len - Number(pos) };
    pos -= BigInt(s.len);
  }
  return null;
}

/** One chunk the NIC moved (or failed to). */
export interface StreamChunk {
  readonly off: number;
  readonly len: number;
  readonly src: DmaAddr;
  /** Which mapping of the MR translated it: 0 for the first, +1 per re-map after a fault. */
  readonly mapGen: number;
  readonly postNs: number;
  doneNs: number;
  status: WcStatus | 'pending';
}

export interface StreamResult {
  readonly ok: boolean;
  readonly bytes: number;
  readonly status: WcStatus | 'page-fault-failed';
  readonly chunks: readonly StreamChunk[];
  readonly detail?: string;
}

const dispatchers = new WeakMap<Nic, Map<number, (wc: WorkCompletion) => void>>();
let nextWrId = 1;

/** Route the NIC's completions to whoever posted each work request. */
function postWr(nic: Nic, wr: Parameters<Nic['postSend']>[0], done: (wc: WorkCompletion) => void): void {
  let d = dispatchers.get(nic);
  if (!d) {
    const map = new Map<number, (wc: WorkCompletion) => void>();
    nic.onCompletion = (wc) => {
      const h = map.get(wc.wrId);
      map.delete(wc.wrId);
      h?.(wc);
    };
    dispatchers.set(nic, map);
    d = map;
  }
  d.set(wr.wrId, done);
  nic.postSend(wr);
}

/**
 * Stream `len` bytes from byte `mrOffset` of `mr` to `dst` (a DMA address of the destination as the NIC
 * sees it) as RDMA WRITEs of at most `chunkBytes`, `window` chunks in flight; the NIC page-faults on a
 * zapped MR and the driver re-maps it before the stream goes on.
 * @returns what moved, each chunk, and the first error (a failed page fault, or a work completion
 *   error). May sleep.
 */
export function* mlx5StreamFromMr(
  nic: Nic,
  mr: Mlx5Mr,
  mrOffset: bigint,
  dst: DmaAddr,
  len: number,
  o: { chunkBytes?: number; window?: number } = {},
): KTaskOp<StreamResult> {
  const chunkBytes = o.chunkBytes ?? 256 * 1024;
  const window = o.window ?? 4;
  const chunks: StreamChunk[] = [];
  const wq = new WaitQueue();
  let failure: { status: StreamResult['status']; detail: string } | null = null;
  let off = 0;
  let moved = 0;
  while (off < len && failure === null) {
    while (mr.inflight >= window && failure === null) yield waitOn(wq);
    if (failure !== null) break;
    if (mr.mtt === null) {
      const f = yield* pagefaultDmabufMr(mr);
      if (!f.ok) {
        failure = { status: 'page-fault-failed', detail: `${f.errno}: ${f.detail}` };
        break;
      }
      continue;
    }
    const t = mrTranslate(mr, mrOffset + BigInt(off));
    if (t === null) {
      failure = { status: 'local-protection-error', detail: `offset ${off} outside the MR` };
      break;
    }
    const n = Math.min(chunkBytes, len - off, t.contiguous);
    const c: StreamChunk = {
      off,
      len: n,
      src: t.addr,
      mapGen: mr.stats.remaps,
      postNs: nic.fab.clock.nowNs,
      doneNs: -1,
      status: 'pending',
    };
    chunks.push(c);
    mr.inflight++;
    postWr(
      nic,
      {
        wrId: nextWrId++,
        opcode: 'rdma-write',
        localAddr: t.addr,
        remoteAddr: dmaAddr(dst + BigInt(off)),
        len: bytes(n),
      },
      (wc) => {
        c.doneNs = wc.endNs;
        c.status = wc.status;
        if (wc.status === 'success') moved += wc.bytes;
        else failure ??= { status: wc.status, detail: wc.reason ?? wc.status };
        if (--mr.inflight === 0) mr.drained.wakeAll();
        wq.wakeAll();
      },
    );
    off += n;
  }
  while (mr.inflight > 0) yield waitOn(wq);
  const f = failure as { status: StreamResult['status']; detail: string } | null;
  if (f) return { ok: false, bytes: moved, status: f.status, chunks, detail: f.detail };
  return { ok: true, bytes: moved, status: 'success', chunks };
}
