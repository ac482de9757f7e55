// phyr layout `pages8`: a dense page list, one 64-bit word per page — the "8 bytes/entry rather than
// 16" layout the Physr discussion proposed for RDMA and DRM page lists (seed 002).
//
// Word format (decided here; no kernel structure has it):
//
//    63                                   12 11          1   0
//   +---------------------------------------+-------------+---+
//   |                 pfn                   |  reserved 0 | B |
//   +---------------------------------------+-------------+---+
//
// B (PHYR_PAGE_BREAK) marks a page that starts a new run although it may be physically contiguous
// with the previous page: the pgmap changes there, and the cursor must not merge across it.
// The list describes one byte stream: it starts `headOffset` bytes into the first page and is
// `totalLen` bytes long, so only the first page may start late and only the last may end early.
// The cursor merges contiguous pages (no B bit) into maximal runs, giving the same ranges as the
// other layouts.

import { type Bytes, bytes, PAGE_SHIFT, PAGE_SIZE_N, type PhysAddr, physAddr } from '../../../hw/addr.js';
import { err, type KResult, ok } from '../../errno.js';
import type { PgmapOf, PhyrCursor, PhyrList } from '../phyr.js';
import { ChunkedU64 } from './chunked-u64.js';
import { minBig, type PhysRange } from './merge.js';
import { phyrRanges16Build } from './ranges16.js';

/** Flag bit: this page starts a new run (pgmap boundary); never merged with the previous page. */
export const PHYR_PAGE_BREAK = 1n;
const SHIFT = BigInt(PAGE_SHIFT);
const FLAGS_MASK = PAGE_SIZE_N - 1n;

/** Streams pages into a `pages8` list. */
export class PhyrPages8Builder {
  private readonly words = new ChunkedU64();
  private readonly headOffset: number;
  private readonly pgmapOf: PgmapOf | null;
  private lastPgmap = -1;

  /**
   * @param headOffset bytes into the first page where the data starts (0 <= headOffset < PAGE_SIZE)
   * @param pgmapOf pgmap lookup per page, or null when the caller marks breaks itself (`pushPage`)
   */
  constructor(headOffset: number, pgmapOf: PgmapOf | null) {
    if (!Number.isInteger(headOffset) || headOffset < 0 || headOffset >= Number(PAGE_SIZE_N)) {
      throw new RangeError(`pages8 head offset ${headOffset}`);
    }
    this.headOffset = headOffset;
    this.pgmapOf = pgmapOf;
  }

  /** Append page `pfn`; with a pgmap lookup, a pgmap change sets the break bit. */
  pushPfn(pfn: number): void {
    let brk = false;
    if (this.pgmapOf !== null) {
      const pg = this.pgmapOf(physAddr(BigInt(pfn) << SHIFT));
      brk = this.words.length > 0 && pg !== this.lastPgmap;
      this.lastPgmap = pg;
    }
    this.pushPage(pfn, brk);
  }

  /** Append page `pfn`, starting a new run when `brk` is set. */
  pushPage(pfn: number, brk: boolean): void {
    if (!Number.isSafeInteger(pfn) || pfn < 0) throw new RangeError(`pfn ${pfn} does not fit a pages8 word`);
    this.words.push((BigInt(pfn) << SHIFT) | (brk ? PHYR_PAGE_BREAK : 0n));
  }

  /**
   * The finished list of `totalLen` bytes.
   * @returns ok, or EINVAL when `totalLen` does not end inside the last page pushed.
   */
  finish(totalLen: bigint): KResult<PhyrPages8> {
    const n = BigInt(this.words.length);
    const head = BigInt(this.headOffset);
    const fits =
      n === 0n
        ? totalLen === 0n
        : totalLen > (n - 1n) * PAGE_SIZE_N - head && totalLen <= n * PAGE_SIZE_N - head;
    if (!fits)
      return err('EINVAL', `${totalLen} bytes from offset ${head} do not end in the last of ${n} pages`);
    this.words.trim();
    return ok(new PhyrPages8(this.words, n === 0n ? 0 : this.headOffset, bytes(totalLen)));
  }
}

/**
 * Build a `pages8` list from page frame numbers, a head offset and a total length.
 * @returns ok; EINVAL when headOffset is outside the first page or totalLen does not end in the last page.
 */
export function phyrPages8FromPfns(
  pfns: Iterable<number>,
  headOffset: number,
  totalLen: Bytes,
  pgmapOf: PgmapOf,
): KResult<PhyrPages8> {
  if (!Number.isInteger(headOffset) || headOffset < 0 || headOffset >= Number(PAGE_SIZE_N)) {
    return err('EINVAL', `head offset ${headOffset} is not inside a page`);
  }
  const b = new PhyrPages8Builder(headOffset, pgmapOf);
  for (const pfn of pfns) b.pushPfn(pfn);
  return b.finish(totalLen);
}

/**
 * Build a `pages8` list from ranges (merged first, as every layout does).
 * @returns ok; EINVAL when a merged run starts inside a page (other than the first run) or ends
 *   inside a page (other than the last run) — a page list cannot hold such holes.
 */
export function phyrPages8FromRanges(ranges: Iterable<PhysRange>, pgmapOf: PgmapOf): KResult<PhyrPages8> {
  const runs = phyrRanges16Build(ranges, pgmapOf);
  const n = runs.entryCount;
  const head = n === 0 ? 0 : Number(runs.physAt(0) & FLAGS_MASK);
  const b = new PhyrPages8Builder(head, null);
  for (let i = 0; i < n; i++) {
    const p = runs.physAt(i);
    const end = p + runs.lenAt(i);
    if (i > 0 && (p & FLAGS_MASK) !== 0n) return err('EINVAL', `run ${i} starts inside a page`);
    if (i < n - 1 && (end & FLAGS_MASK) !== 0n) return err('EINVAL', `run ${i} ends inside a page`);
    // Runs are maximal, so a run that starts contiguous with the previous one is a pgmap change.
    const firstPfn = Number(p >> SHIFT);
    const lastPfn = Number((end - 1n) >> SHIFT);
    for (let pfn = firstPfn; pfn <= lastPfn; pfn++) b.pushPage(pfn, i > 0 && pfn === firstPfn);
  }
  return b.finish(runs.totalLen());
}

class Pages8Cursor implements PhyrCursor {
  done = false;
  phys: PhysAddr = physAddr(0);
  len: Bytes = bytes(0);
  private idx = 0;
  private remaining: bigint;
  private readonly list: PhyrPages8;

  constructor(list: PhyrPages8) {
    this.list = list;
    this.remaining = list.totalLen();
    this.load();
  }

  private load(): void {
    const { list } = this;
    const count = list.entryCount;
    if (this.idx >= count || this.remaining === 0n) {
      this.done = true;
      return;
    }
    let pfn = list.wordAt(this.idx) >> SHIFT;
    const start = (pfn << SHIFT) + (this.idx === 0 ? BigInt(list.headOffset) : 0n);
    const first = ((pfn + 1n) << SHIFT) - start;
    let len = minBig(first, this.remaining);
    this.idx++;
    while (this.idx < count && len < this.remaining) {
      const w = list.wordAt(this.idx);
      if ((w & PHYR_PAGE_BREAK) !== 0n || w >> SHIFT !== pfn + 1n) break;
      const rest = this.remaining - len;
      len += minBig(rest, PAGE_SIZE_N);
      pfn++;
      this.idx++;
    }
    this.remaining -= len;
    this.phys = physAddr(start);
    this.len = bytes(len);
  }

  advance(): void {
    if (this.done) throw new RangeError('phyr cursor advanced past the end');
    this.load();
  }
}

/** A `pages8` list (immutable once built). */
export class PhyrPages8 implements PhyrList {
  readonly layout = 'pages8' as const;
  readonly headOffset: number;
  private readonly words: ChunkedU64;
  private readonly total: Bytes;

  constructor(words: ChunkedU64, headOffset: number, total: Bytes) {
    this.words = words;
    this.headOffset = headOffset;
    this.total = total;
  }

  get entryCount(): number {
    return this.words.length;
  }

  /** The raw word of page `i` (pfn << PAGE_SHIFT | flags). */
  wordAt(i: number): bigint {
    return this.words.get(i);
  }

  totalLen(): Bytes {
    return this.total;
  }

  cursor(): PhyrCursor {
    return new Pages8Cursor(this);
  }

  slice(offset: Bytes, len: Bytes): PhyrPages8 {
    if (offset < 0n || len < 0n || offset + len > this.total) {
      throw new RangeError(`phyr slice [${offset}, +${len}) of a ${this.total}-byte list`);
    }
    const out = new ChunkedU64();
    if (len === 0n) return new PhyrPages8(out, 0, bytes(0));
    const abs = BigInt(this.headOffset) + offset;
    const first = Number(abs >> SHIFT);
    const last = Number((abs + len - 1n) >> SHIFT);
    for (let i = first; i <= last; i++)
      out.push(i === first ? this.wordAt(i) & ~PHYR_PAGE_BREAK : this.wordAt(i));
    out.trim();
    return new PhyrPages8(out, Number(abs & FLAGS_MASK), len);
  }

  bytesUsed(): number {
    return this.words.byteLength;
  }
}
