// Byte-addressable memory with contents: system RAM, a device BAR, an NVMe controller memory buffer
// (CMB). Backed sparsely: fixed-size chunks (64 KiB by default) in a Map, allocated on first write,
// so a 64 GiB BAR costs nothing until written. Reads of never-written bytes return zeros without
// allocating. Mirrors no kernel file: this is the hardware the kernel maps.
//
//   offset ─┬─ chunk 0 [64 KiB] ── allocated
//           ├─ chunk 1            ── absent: reads as zeros
//           └─ chunk 2 [64 KiB] ── allocated
//
// Offsets inside a region are plain numbers (regions are below 2^53 bytes) so the hot paths stay in
// number arithmetic; physical addresses, as branded bigints, are decoded to (region, offset) by
// PhysMemoryMap. Bulk operations work chunk piece by chunk piece with Uint8Array.set / copyWithin /
// fill, never byte by byte. An out-of-range access is a bug in the caller (the address decoder
// checks ranges first) and throws.

import type { Bytes } from '../addr.js';
import { Checksum } from './checksum.js';

export type MemoryKind = 'ram' | 'bar' | 'cmb';

export const DEFAULT_CHUNK_BYTES = 64 * 1024;

export interface SparseMemoryOptions {
  /** Chunk size in bytes: a power of two, 4 KiB to 16 MiB. */
  readonly chunkBytes?: number;
}

export class SparseMemory {
  readonly name: string;
  readonly kind: MemoryKind;
  readonly size: Bytes;
  readonly sizeBytes: number;
  readonly chunkBytes: number;
  /** @internal chunk index -> contents */
  readonly chunks = new Map<number, Uint8Array>();

  constructor(name: string, kind: MemoryKind, size: Bytes, opts: SparseMemoryOptions = {}) {
    const chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!(chunkBytes >= 4096 && chunkBytes <= 1 << 24 && (chunkBytes & (chunkBytes - 1)) === 0))
      throw new RangeError(`SparseMemory ${name}: bad chunk size ${chunkBytes}`);
    if (size > BigInt(Number.MAX_SAFE_INTEGER))
      throw new RangeError(`SparseMemory ${name}: size ${size} too large`);
    this.name = name;
    this.kind = kind;
    this.size = size;
    this.sizeBytes = Number(size);
    this.chunkBytes = chunkBytes;
  }

  /** Bytes of backing store allocated so far. */
  get allocatedBytes(): number {
    return this.chunks.size * this.chunkBytes;
  }

  /** Copy `dst.length` bytes starting at `offset` into `dst`. */
  read(offset: number, dst: Uint8Array): void {
    this.check(offset, dst.length);
    let done = 0;
    this.pieces(offset, dst.length, (chunk, inChunk, n) => {
      if (chunk) dst.set(chunk.subarray(inChunk, inChunk + n), done);
      else dst.fill(0, done, done + n);
      done += n;
    });
  }

  /** Convenience: a fresh buffer with `length` bytes from `offset`. */
  readBytes(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.read(offset, out);
    return out;
  }

  /** Copy `src` into the region at `offset`, allocating chunks as needed. */
  write(offset: number, src: Uint8Array): void {
    this.check(offset, src.length);
    let done = 0;
    this.pieces(offset, src.length, (_chunk, inChunk, n, index) => {
      this.chunkFor(index).set(src.subarray(done, done + n), inChunk);
      done += n;
    });
  }

  /** Set `length` bytes at `offset` to `value`; zeroing whole chunks frees them. */
  fill(offset: number, length: number, value: number): void {
    this.check(offset, length);
    const v = value & 0xff;
    this.pieces(offset, length, (chunk, inChunk, n, index) => {
      if (v === 0) {
        if (!chunk) return;
        if (n === this.chunkBytes) this.chunks.delete(index);
        else chunk.fill(0, inChunk, inChunk + n);
      } else this.chunkFor(index).fill(v, inChunk, inChunk + n);
    });
  }

  /** 64-bit checksum of `length` bytes at `offset` (see checksum.ts); never-written spans cost O(log n). */
  checksum(offset: number, length: number): bigint {
    const h = new Checksum();
    this.hashInto(h, offset, length);
    return h.digest();
  }

  /** Feed `length` bytes at `offset` into a running checksum (for ranges spanning regions). */
  hashInto(h: Checksum, offset: number, length: number): void {
    this.check(offset, length);
    const cb = this.chunkBytes;
    const end = offset + length;
    const spanChunks = Math.ceil(end / cb) - Math.floor(offset / cb);
    if (spanChunks <= 4 * this.chunks.size) {
      this.pieces(offset, length, (chunk, inChunk, n) => {
        if (chunk) h.update(chunk.subarray(inChunk, inChunk + n));
        else h.updateZeros(n);
      });
      return;
    }
    // Mostly never written: visit only the allocated chunks, in order, and hash the gaps as zero runs.
    const first = Math.floor(offset / cb);
    const last = Math.floor((end - 1) / cb);
    const keys = [...this.chunks.keys()].filter((k) => k >= first && k <= last).sort((a, b) => a - b);
    let pos = offset;
    for (const k of keys) {
      const base = k * cb;
      const from = Math.max(base, offset);
      const to = Math.min(base + cb, end);
      if (from > pos) h.updateZeros(from - pos);
      h.update(this.chunks.get(k)!.subarray(from - base, to - base));
      pos = to;
    }
    if (end > pos) h.updateZeros(end - pos);
  }

  /** @internal the chunk at `index`, allocated (zeroed) if absent. */
  chunkFor(index: number): Uint8Array {
    let c = this.chunks.get(index);
    if (!c) {
      c = new Uint8Array(this.chunkBytes);
      this.chunks.set(index, c);
    }
    return c;
  }

  /** @internal throw unless [offset, offset + length) lies inside the region. */
  check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0)
      throw new RangeError(`${this.name}: bad access offset ${offset} length ${length}`);
    if (offset + length > this.sizeBytes)
      throw new RangeError(`${this.name}: access [${offset}, +${length}) beyond size ${this.sizeBytes}`);
  }

  /** Walk [offset, offset + length) chunk by chunk: (chunk or undefined, offset in chunk, bytes, index). */
  private pieces(
    offset: number,
    length: number,
    fn: (chunk: Uint8Array | undefined, inChunk: number, n: number, index: number) => void,
  ): void {
    const cb = this.chunkBytes;
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const index = Math.floor(pos / cb);
      const inChunk = pos - index * cb;
      const n = Math.min(end - pos, cb - inChunk);
      fn(this.chunks.get(index), inChunk, n, index);
      pos += n;
    }
  }
}

/**
 * Copy `length` bytes from `src` at `srcOffset` to `dst` at `dstOffset` (memmove semantics when both
 * are the same region and the ranges overlap). Never-written source spans stay unallocated in the
 * destination when it too was never written there.
 * Preconditions: both ranges inside their regions (else throws: a bug in the caller).
 * @returns nothing; no errno.
 */
export function copyMemory(
  dst: SparseMemory,
  dstOffset: number,
  src: SparseMemory,
  srcOffset: number,
  length: number,
): void {
  src.check(srcOffset, length);
  dst.check(dstOffset, length);
  if (length === 0 || (src === dst && srcOffset === dstOffset)) return;
  const backward = src === dst && dstOffset > srcOffset && dstOffset < srcOffset + length;
  const scb = src.chunkBytes;
  const dcb = dst.chunkBytes;
  let left = length;
  while (left > 0) {
    // Forward: the next piece starts at the current offsets. Backward: it ends at offset + left.
    const s = backward ? srcOffset + left - 1 : srcOffset + length - left;
    const d = backward ? dstOffset + left - 1 : dstOffset + length - left;
    const si = Math.floor(s / scb);
    const di = Math.floor(d / dcb);
    const sIn = s - si * scb;
    const dIn = d - di * dcb;
    const n = backward ? Math.min(left, sIn + 1, dIn + 1) : Math.min(left, scb - sIn, dcb - dIn);
    const s0 = backward ? sIn + 1 - n : sIn;
    const d0 = backward ? dIn + 1 - n : dIn;
    copyPiece(dst, di, d0, src.chunks.get(si), s0, n);
    left -= n;
  }
}

function copyPiece(
  dst: SparseMemory,
  di: number,
  d0: number,
  from: Uint8Array | undefined,
  s0: number,
  n: number,
) {
  if (from) {
    const to = dst.chunkFor(di);
    if (to === from) to.copyWithin(d0, s0, s0 + n);
    else to.set(from.subarray(s0, s0 + n), d0);
    return;
  }
  const to = dst.chunks.get(di);
  if (!to) return;
  if (n === dst.chunkBytes) dst.chunks.delete(di);
  else to.fill(0, d0, d0 + n);
}
