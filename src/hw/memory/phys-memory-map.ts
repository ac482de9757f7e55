// The physical address decoder: which memory region (RAM, a BAR, a CMB) answers a CPU physical
// address. The kernel's view of the same map is the iomem resource tree (kernel/resource.c,
// /proc/iomem); this is the hardware side of it, which the fabric uses to deliver a DMA's bytes.
//
//   0x0 ─────────── RAM "node0" ─────────── 0x8000_0000   (hole: unmapped)   0x38_0000_0000 ── BAR ──
//
// Windows may not overlap. A range that crosses from one window into one that starts exactly where
// it ends is decoded in pieces; a range that touches an unmapped byte is not decoded at all, and the
// caller learns the first unmapped address (a CPU read there returns all ones, a DMA there is an
// Unsupported Request: that decision belongs to the fabric, not to memory).

import { hex, type PhysAddr, physAddr } from '../addr.js';
import { Checksum } from './checksum.js';
import { copyMemory, type SparseMemory } from './sparse-memory.js';

export interface MemoryWindow {
  readonly base: PhysAddr;
  /** First address past the window. */
  readonly end: bigint;
  readonly region: SparseMemory;
}

/** One decoded piece: `length` bytes of `region` at `offset`. */
export interface MemPiece {
  readonly region: SparseMemory;
  readonly offset: number;
  readonly length: number;
}

export type PhysDecode =
  | { readonly ok: true; readonly pieces: readonly MemPiece[] }
  | { readonly ok: false; readonly unmappedAt: PhysAddr };

export type PhysAccess = { readonly ok: true } | { readonly ok: false; readonly unmappedAt: PhysAddr };

const OK: PhysAccess = { ok: true };

export class PhysMemoryMap {
  private readonly list: MemoryWindow[] = [];

  /** Windows in address order. */
  get windows(): readonly MemoryWindow[] {
    return this.list;
  }

  /**
   * Place `region` at `base`. Precondition: it overlaps no window and the region is not already
   * mapped (else throws: the machine description is inconsistent, a bug upstream).
   */
  add(base: PhysAddr, region: SparseMemory): MemoryWindow {
    const end = base + region.size;
    if (end > 1n << 64n) throw new RangeError(`${region.name} at ${hex(base)} runs past 2^64`);
    if (this.list.some((w) => w.region === region)) throw new Error(`${region.name} is already mapped`);
    const i = this.upperBound(base);
    const prev = this.list[i - 1];
    const next = this.list[i];
    if ((prev && prev.end > base) || (next && next.base < end)) {
      const other = prev && prev.end > base ? prev : next!;
      throw new RangeError(
        `${region.name} [${hex(base)}-${hex(end - 1n)}] overlaps ${other.region.name} [${hex(other.base)}-${hex(other.end - 1n)}]`,
      );
    }
    const w: MemoryWindow = { base, end, region };
    this.list.splice(i, 0, w);
    return w;
  }

  /** Unmap `region` (a BAR being moved); false if it was not mapped. */
  remove(region: SparseMemory): boolean {
    const i = this.list.findIndex((w) => w.region === region);
    if (i < 0) return false;
    this.list.splice(i, 1);
    return true;
  }

  /** The window holding `addr`, or null. */
  lookup(addr: PhysAddr): MemoryWindow | null {
    const w = this.list[this.upperBound(addr) - 1];
    return w && addr < w.end ? w : null;
  }

  /** Decode [addr, addr + length) into region pieces, or report the first unmapped address. */
  resolve(addr: PhysAddr, length: number): PhysDecode {
    const pieces: MemPiece[] = [];
    let at = addr as bigint;
    let left = length;
    let i = this.upperBound(addr) - 1;
    while (left > 0) {
      const w = this.list[i];
      if (!w || at < w.base || at >= w.end) return { ok: false, unmappedAt: physAddr(at) };
      const offset = Number(at - w.base);
      const n = Math.min(left, w.region.sizeBytes - offset);
      pieces.push({ region: w.region, offset, length: n });
      left -= n;
      at += BigInt(n);
      i++;
    }
    return { ok: true, pieces };
  }

  /** Read `dst.length` bytes at `addr`. */
  read(addr: PhysAddr, dst: Uint8Array): PhysAccess {
    const d = this.resolve(addr, dst.length);
    if (!d.ok) return d;
    let done = 0;
    for (const p of d.pieces) {
      p.region.read(p.offset, dst.subarray(done, done + p.length));
      done += p.length;
    }
    return OK;
  }

  /** Write `src` at `addr`; nothing is written unless the whole range decodes. */
  write(addr: PhysAddr, src: Uint8Array): PhysAccess {
    const d = this.resolve(addr, src.length);
    if (!d.ok) return d;
    let done = 0;
    for (const p of d.pieces) {
      p.region.write(p.offset, src.subarray(done, done + p.length));
      done += p.length;
    }
    return OK;
  }

  /**
   * Copy `length` bytes from `src` to `dst` (a DMA's data movement); nothing moves unless both decode.
   * Overlapping ranges get memmove semantics within one window; across window boundaries they copy
   * forward (no device DMA copies a range onto itself across two windows).
   */
  copy(dst: PhysAddr, src: PhysAddr, length: number): PhysAccess {
    const s = this.resolve(src, length);
    if (!s.ok) return s;
    const d = this.resolve(dst, length);
    if (!d.ok) return d;
    if (s.pieces.length === 1 && d.pieces.length === 1) {
      const sp = s.pieces[0]!;
      const dp = d.pieces[0]!;
      copyMemory(dp.region, dp.offset, sp.region, sp.offset, length);
      return OK;
    }
    // Walk both piece lists together; each step copies up to the nearer piece boundary.
    let si = 0;
    let di = 0;
    let sUsed = 0;
    let dUsed = 0;
    for (let left = length; left > 0; ) {
      const sp = s.pieces[si]!;
      const dp = d.pieces[di]!;
      const n = Math.min(sp.length - sUsed, dp.length - dUsed);
      copyMemory(dp.region, dp.offset + dUsed, sp.region, sp.offset + sUsed, n);
      sUsed += n;
      dUsed += n;
      left -= n;
      if (sUsed === sp.length) [si, sUsed] = [si + 1, 0];
      if (dUsed === dp.length) [di, dUsed] = [di + 1, 0];
    }
    return OK;
  }

  /** Checksum of [addr, addr + length) (see checksum.ts), or null when part of it is unmapped. */
  checksum(addr: PhysAddr, length: number): bigint | null {
    const d = this.resolve(addr, length);
    if (!d.ok) return null;
    const h = new Checksum();
    for (const p of d.pieces) p.region.hashInto(h, p.offset, p.length);
    return h.digest();
  }

  /** Index of the first window whose base is above `addr`. */
  private upperBound(addr: bigint): number {
    let lo = 0;
    let hi = this.list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.list[mid]!.base <= addr) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
