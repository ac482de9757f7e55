// phyr layout `ranges16`: one {phys, len} pair of 64-bit words per range, 16 bytes per entry — the
// shape of `struct bio_vec` without the page pointer, and of `struct phys_vec` with a 64-bit length.
//
// The builder merges physically contiguous input unless the pgmap changes (phyr/merge.ts), so a
// list holds maximal runs and its cursor is a plain walk over the pairs.

import { type Bytes, bytes, type PhysAddr, physAddr } from '../../../hw/addr.js';
import { type KResult, ok } from '../../errno.js';
import type { PgmapOf, PhyrCursor, PhyrList } from '../phyr.js';
import { ChunkedU64 } from './chunked-u64.js';
import { minBig, type PhysRange, phyrMergeable } from './merge.js';

export type { PhysRange } from './merge.js';

/** Accumulates ranges, merging contiguous same-pgmap neighbours; `finish()` trims the storage. */
export class PhyrRanges16Builder {
  private readonly words = new ChunkedU64();
  private lastPhys = 0n;
  private lastLen = 0n;
  private open = false;
  private total = 0n;
  private readonly pgmapOf: PgmapOf;

  constructor(pgmapOf: PgmapOf) {
    this.pgmapOf = pgmapOf;
  }

  /** Add `[phys, phys + len)`; empty ranges are dropped (a phyr never holds empty entries). */
  push(phys: bigint, len: bigint): void {
    if (len < 0n) throw new RangeError(`phyr range with negative length ${len}`);
    if (len === 0n) return;
    this.total += len;
    if (this.open && phyrMergeable(this.lastPhys + this.lastLen, phys, this.pgmapOf)) {
      this.lastLen += len;
      return;
    }
    this.flush();
    this.lastPhys = phys;
    this.lastLen = len;
    this.open = true;
  }

  private flush(): void {
    if (!this.open) return;
    this.words.push(this.lastPhys);
    this.words.push(this.lastLen);
    this.open = false;
  }

  /** The finished list; the builder must not be used afterwards. */
  finish(): PhyrRanges16 {
    this.flush();
    this.words.trim();
    return new PhyrRanges16(this.words, bytes(this.total));
  }
}

/** Build a `ranges16` list from ranges, merging contiguous same-pgmap neighbours. */
export function phyrRanges16Build(ranges: Iterable<PhysRange>, pgmapOf: PgmapOf): PhyrRanges16 {
  const b = new PhyrRanges16Builder(pgmapOf);
  for (const r of ranges) b.push(r.phys, r.len);
  return b.finish();
}

/** `phyrRanges16Build` as a layout builder. @returns always ok (every range list fits this layout). */
export function phyrRanges16FromRanges(ranges: Iterable<PhysRange>, pgmapOf: PgmapOf): KResult<PhyrRanges16> {
  return ok(phyrRanges16Build(ranges, pgmapOf));
}

class Ranges16Cursor implements PhyrCursor {
  done = false;
  phys: PhysAddr = physAddr(0);
  len: Bytes = bytes(0);
  private next = 0;
  private readonly list: PhyrRanges16;

  constructor(list: PhyrRanges16) {
    this.list = list;
    this.load();
  }

  private load(): void {
    if (this.next >= this.list.entryCount) {
      this.done = true;
      return;
    }
    this.phys = this.list.physAt(this.next);
    this.len = this.list.lenAt(this.next);
    this.next++;
  }

  advance(): void {
    if (this.done) throw new RangeError('phyr cursor advanced past the end');
    this.load();
  }
}

/** A `ranges16` list (immutable once built). */
export class PhyrRanges16 implements PhyrList {
  readonly layout = 'ranges16' as const;
  private readonly words: ChunkedU64;
  private readonly total: Bytes;

  constructor(words: ChunkedU64, total: Bytes) {
    if (words.length % 2 !== 0) throw new Error('ranges16 storage holds an odd number of words');
    this.words = words;
    this.total = total;
  }

  get entryCount(): number {
    return this.words.length / 2;
  }

  /** Start of range `i`. */
  physAt(i: number): PhysAddr {
    return physAddr(this.words.get(2 * i));
  }

  /** Length of range `i`. */
  lenAt(i: number): Bytes {
    return bytes(this.words.get(2 * i + 1));
  }

  totalLen(): Bytes {
    return this.total;
  }

  cursor(): PhyrCursor {
    return new Ranges16Cursor(this);
  }

  slice(offset: Bytes, len: Bytes): PhyrRanges16 {
    if (offset < 0n || len < 0n || offset + len > this.total) {
      throw new RangeError(`phyr slice [${offset}, +${len}) of a ${this.total}-byte list`);
    }
    // The pieces of a sliced list are already maximal runs, so they are copied without re-merging.
    const out = new ChunkedU64();
    let skip: bigint = offset;
    let want: bigint = len;
    for (let i = 0; i < this.entryCount && want > 0n; i++) {
      const p = this.physAt(i);
      const l = this.lenAt(i);
      if (skip >= l) {
        skip -= l;
        continue;
      }
      const take = minBig(l - skip, want);
      out.push(p + skip);
      out.push(take);
      want -= take;
      skip = 0n;
    }
    out.trim();
    return new PhyrRanges16(out, len);
  }

  bytesUsed(): number {
    return this.words.byteLength;
  }
}
