// One transfer of a scenario: an O_DIRECT read (device -> buffer) or write (buffer -> device) of
// `size` bytes in `blockSize` pieces with `queueDepth` of them in flight, the way fio with an async
// engine issues them; a short completion (a bio that stopped at a memory-kind boundary) is followed by
// a request for the rest, as a careful program does. In-kernel buffers go in as bios built with
// bio_add_page() (an nvmet-style user). Afterwards every byte is checked: each completed piece's
// source and destination checksums must agree, each failed piece's destination must be unchanged.

import { PAGE_SIZE } from '../../hw/addr.js';
import { type Bio, bioAddPage, bioAlloc, SECTOR_SHIFT } from '../../kernel/block/bio.js';
import { submitBio } from '../../kernel/block/blk-mq.js';
import { blkStatusToErrno } from '../../kernel/block/blk-status.js';
import { blkdevDirectIO, type DioResult } from '../../kernel/block/fops.js';
import { iovIterInit } from '../../kernel/block/iov-iter.js';
import type { Errno } from '../../kernel/errno.js';
import { pfnToPage } from '../../kernel/mm/page.js';
import type { UserAddr } from '../../kernel/mm/vma.js';
import { checksumBuffer, kernelBufferPfn, type RunBuffer } from './buffers.js';
import { newTraffic, type TransferTraffic } from './observe.js';
import type { TransferDoc } from './scenario-file.js';
import type { NvmeEntry, World } from './world.js';

export const DEFAULT_BLOCK_SIZE = 128 * 1024;

export interface TransferError {
  readonly errno: Errno;
  readonly detail: string;
  count: number;
}

export interface TransferResult {
  readonly name: string;
  readonly op: 'read' | 'write';
  readonly device: string;
  readonly buffer: string;
  readonly bufferKind: RunBuffer['kind'];
  readonly size: number;
  readonly blockSize: number;
  readonly queueDepth: number;
  readonly skipped: boolean;
  bytesMoved: number;
  readonly errors: TransferError[];
  verified: boolean;
  readonly verifyProblems: string[];
  startNs: number;
  endNs: number;
  readonly traffic: TransferTraffic;
  /** Data a controller moved inside itself (its own CMB), not over the fabric. */
  internalBytes: number;
}

interface Piece {
  readonly pos: number;
  readonly boff: number;
  readonly len: number;
  /** Destination checksum before the transfer (for the untouched check of failed pieces). */
  readonly before: bigint;
  state: 'pending' | 'ok' | 'failed';
}

/** The bio of an in-kernel user: the buffer's pages added one by one. */
function kernelBio(
  e: NvmeEntry,
  w: World,
  b: RunBuffer & { kind: 'kernel-p2pmem' },
  p: Piece,
  op: 'read' | 'write',
  done: (r: DioResult) => void,
): void {
  const disk = e.dev.disk!;
  const bio: Bio = bioAlloc(disk, Math.ceil(p.len / PAGE_SIZE) + 1, op);
  bio.sector = p.pos >> SECTOR_SHIFT;
  for (let off = 0; off < p.len; ) {
    const at = p.boff + off;
    const n = Math.min(PAGE_SIZE - (at % PAGE_SIZE), p.len - off);
    const page = pfnToPage(w.kernel.mm, kernelBufferPfn(b, at));
    if (page === null || bioAddPage(bio, page, n, at % PAGE_SIZE) !== n)
      throw new Error('BUG: kernel buffer page not addable');
    off += n;
  }
  bio.endIo = (x) => {
    const errno = blkStatusToErrno(x.status);
    done(
      errno === null
        ? { ok: true, bytes: p.len }
        : { ok: false, errno, detail: `bio completed with BLK_STS ${x.status}` },
    );
  };
  submitBio(disk, bio);
}

function issue(
  w: World,
  e: NvmeEntry,
  b: RunBuffer,
  t: TransferDoc,
  p: Piece,
  done: (r: DioResult) => void,
): void {
  if (b.kind === 'failed')
    return done({ ok: false, errno: b.errno, detail: `buffer ${b.name}: ${b.detail}` });
  if (e.dev.disk === null)
    return done({ ok: false, errno: 'ENODEV', detail: `${e.name} has no disk (probe failed)` });
  if (b.kind === 'kernel-p2pmem') return kernelBio(e, w, b, p, t.op, done);
  const it = iovIterInit(w.proc, t.op === 'read', [
    { base: (b.user + BigInt(p.boff)) as UserAddr, len: p.len },
  ]);
  blkdevDirectIO(e.dev.disk, { pos: p.pos, complete: done }, it);
}

const destSum = (
  w: World,
  e: NvmeEntry,
  b: RunBuffer,
  op: 'read' | 'write',
  p: { pos: number; boff: number; len: number },
): bigint => (op === 'read' ? checksumBuffer(w, b, p.boff, p.len) : e.ctrl.storage.checksum(p.pos, p.len));
const srcSum = (
  w: World,
  e: NvmeEntry,
  b: RunBuffer,
  op: 'read' | 'write',
  p: { pos: number; boff: number; len: number },
): bigint => (op === 'read' ? e.ctrl.storage.checksum(p.pos, p.len) : checksumBuffer(w, b, p.boff, p.len));

/** The result skeleton of a transfer. */
export function newTransferResult(
  t: TransferDoc,
  b: RunBuffer,
  skipped: boolean,
  nowNs: number,
): TransferResult {
  return {
    name: t.name,
    op: t.op,
    device: t.device,
    buffer: t.buffer,
    bufferKind: b.kind,
    size: Number(t.size),
    blockSize: Number(t.blockSize ?? BigInt(DEFAULT_BLOCK_SIZE)),
    queueDepth: t.queueDepth ?? 1,
    skipped,
    bytesMoved: 0,
    errors: [],
    verified: true,
    verifyProblems: [],
    startNs: nowNs,
    endNs: nowNs,
    traffic: newTraffic(),
    internalBytes: 0,
  };
}

/**
 * Run one transfer to completion on the world's engine, reporting progress in bytes.
 * Preconditions: the device exists (`e`) and the buffer is at least bufferOffset + size bytes.
 * @returns the result (errors are values in it; only a broken model throws).
 */
export function runTransfer(
  w: World,
  e: NvmeEntry,
  b: RunBuffer,
  t: TransferDoc,
  r: TransferResult,
  onProgress: (bytes: number) => void,
): TransferResult {
  const pos0 = Number(t.offset ?? 0n);
  const boff0 = Number(t.bufferOffset ?? 0n);
  const pieces: Piece[] = [];
  for (let at = 0; at < r.size; at += r.blockSize) {
    const p = { pos: pos0 + at, boff: boff0 + at, len: Math.min(r.blockSize, r.size - at) };
    pieces.push({ ...p, before: destSum(w, e, b, t.op, p), state: 'pending' });
  }
  const dataBefore = e.ctrl.stats.dataBytes;
  r.startNs = w.engine.nowNs;
  let next = 0;
  let inflight = 0;
  let stop = false;
  const fail = (errno: Errno, detail: string): void => {
    const x = r.errors.find((y) => y.errno === errno);
    if (x) x.count++;
    else r.errors.push({ errno, detail, count: 1 });
    stop = true;
  };
  const launch = (p: Piece): void => {
    inflight++;
    issue(w, e, b, t, p, (res) => {
      inflight--;
      if (!res.ok) {
        p.state = 'failed';
        fail(res.errno, res.detail);
      } else if (res.bytes < p.len) {
        // A short completion: the done part is a piece of its own, the rest goes out again.
        const head: Piece = { ...p, len: res.bytes, state: 'ok' };
        const tail = { pos: p.pos + res.bytes, boff: p.boff + res.bytes, len: p.len - res.bytes };
        pieces.splice(pieces.indexOf(p), 1, head);
        const rest: Piece = { ...tail, before: destSum(w, e, b, t.op, tail), state: 'pending' };
        pieces.push(rest);
        r.bytesMoved += res.bytes;
        onProgress(res.bytes);
        if (!stop) launch(rest);
      } else {
        p.state = 'ok';
        r.bytesMoved += res.bytes;
        onProgress(res.bytes);
      }
      while (!stop && inflight < r.queueDepth && next < pieces.length) launch(pieces[next++]!);
      if (inflight === 0) r.endNs = w.engine.nowNs;
    });
  };
  while (inflight < r.queueDepth && next < pieces.length && !stop) launch(pieces[next++]!);
  w.engine.run();
  if (r.endNs < r.startNs) r.endNs = w.engine.nowNs;
  r.internalBytes = Math.max(0, e.ctrl.stats.dataBytes - dataBefore - r.traffic.dataBytes);
  verify(w, e, b, t.op, pieces, r);
  return r;
}

/** Compare checksums piece by piece; failed or never-issued pieces must have left the destination alone. */
function verify(
  w: World,
  e: NvmeEntry,
  b: RunBuffer,
  op: 'read' | 'write',
  pieces: readonly Piece[],
  r: TransferResult,
): void {
  for (const p of pieces) {
    const where = `bytes ${p.pos}+${p.len} of ${r.device} / ${r.buffer}+${p.boff}`;
    if (p.state === 'ok') {
      if (srcSum(w, e, b, op, p) !== destSum(w, e, b, op, p))
        r.verifyProblems.push(`${where}: destination differs from source`);
    } else if (b.kind !== 'failed' && destSum(w, e, b, op, p) !== p.before)
      r.verifyProblems.push(
        `${where}: ${p.state === 'failed' ? 'a failed' : 'an unissued'} piece changed its destination`,
      );
  }
  r.verified = r.verifyProblems.length === 0;
}
