// The page-array builders of lib/scatterlist.c: `sg_alloc_append_table_from_pages()`,
// `sg_alloc_table_from_pages_segment()` and `sg_alloc_table_from_pages()`, with `get_next_sg()`'s
// chunk allocation and chaining (the entry and table structures are in scatterlist.ts).
//
// They follow the kernel line by line, including its quirks: the append merge grows the previous
// entry by whole pages regardless of `size`, and `size` wraps as an unsigned long once the pages
// run past it. The profile decides the merge rule: 6.1 merges on pfn contiguity alone, 6.2+ also
// requires the same pgmap (`zone_device_pages_have_same_pgmap()`).

import { type Bytes, PAGE_SHIFT, PAGE_SIZE, type PhysAddr, physAddr } from '../../hw/addr.js';
import { err, type KResult, ok } from '../errno.js';
import { NO_PGMAP } from './phyr.js';
import {
  newSgAppendTable,
  type Scatterlist,
  SG_MAX_SINGLE_ALLOC,
  type SgAppendTable,
  type SgOptions,
  type SgTable,
  sgChain,
  sgFreeAppendTable,
  sgInitChunk,
  sgIsLast,
  sgMarkEnd,
  sgNext,
  sgSetPage,
  UINT_MAX,
} from './scatterlist.js';

/**
 * `get_next_sg()`: the entry after `cur`, allocating and chaining a new chunk of
 * min(needed, SG_MAX_SINGLE_ALLOC) entries when `cur`'s successor is the last slot and more than one
 * entry is still needed. @returns the entry, or null when the allocation failed (-ENOMEM).
 */
function getNextSg(
  t: SgAppendTable,
  cur: Scatterlist | null,
  needed: number,
  opts: SgOptions,
): Scatterlist | null {
  let nextSg: Scatterlist | null = null;
  if (cur !== null) {
    nextSg = sgNext(cur);
    if (nextSg === null) throw new Error('BUG: appending after an entry marked end (left_pages was 0)');
    if (!sgIsLast(nextSg) || needed === 1) return nextSg;
  }
  const allocSize = Math.min(needed, SG_MAX_SINGLE_ALLOC);
  if (opts.allocFails?.(allocSize)) return null;
  const chunk = sgInitChunk(allocSize);
  if (cur !== null && nextSg !== null) {
    t.totalNents += allocSize - 1;
    sgChain(nextSg, chunk);
  } else {
    t.sgt.sgl = chunk[0]!;
    t.totalNents = allocSize;
  }
  return chunk[0]!;
}

/** `pages_are_mergeable()` of the profile: 6.1 pfn contiguity; 6.2+ also the same pgmap. */
function pagesAreMergeable(a: number, b: number, opts: SgOptions): boolean {
  if (a !== b + 1) return false;
  if (opts.version === '6.1') return true;
  const pg = opts.pgmapOf ?? NO_PGMAP;
  return pg(pfnPhys(a)) === pg(pfnPhys(b));
}

const pfnPhys = (pfn: number): PhysAddr => physAddr(BigInt(pfn) << BigInt(PAGE_SHIFT));
const U64 = (v: bigint): bigint => BigInt.asUintN(64, v);

function warnOn(opts: SgOptions, what: string): void {
  opts.log?.printk('warn', `WARNING: lib/scatterlist.c: ${what}`);
}

/**
 * `sg_alloc_append_table_from_pages()`: add `pages` to an append table, merging physically
 * contiguous pages into entries of at most `maxSegment` bytes. `offset` is the data's offset in the
 * first page, `size` the valid bytes after it; `leftPages` is how many pages later calls will
 * append (so chunk allocation leaves room for them). The append merge grows the previous entry by
 * whole pages regardless of `size`, exactly as the kernel does.
 *
 * Preconditions: pages.length >= 1 (the kernel reads pages[0] unconditionally).
 * @returns ok;
 *   EINVAL — `maxSegment` aligned down to PAGE_SIZE is below PAGE_SIZE (WARN), or an append to a
 *            non-empty table with a non-zero `offset` (WARN);
 *   EOPNOTSUPP — an append on an architecture without SG chaining;
 *   ENOMEM — a chunk allocation failed; the previous entry's length is restored and the caller
 *            frees the table with `sgFreeAppendTable()`.
 */
export function sgAllocAppendTableFromPages(
  t: SgAppendTable,
  pages: readonly number[],
  offset: number,
  size: Bytes,
  maxSegment: number,
  leftPages: number,
  opts: SgOptions,
): KResult<void> {
  if (pages.length === 0) throw new RangeError('BUG: sg_alloc_append_table_from_pages() with no pages');
  const maxSeg = maxSegment - (maxSegment % PAGE_SIZE);
  if (maxSeg < PAGE_SIZE) {
    warnOn(opts, 'max_segment < PAGE_SIZE in sg_alloc_append_table_from_pages');
    return err('EINVAL', `max_segment ${maxSegment} aligns down below PAGE_SIZE`);
  }
  if (opts.archNoSgChain && t.prv !== null) return err('EOPNOTSUPP', 'append without SG chaining');
  let first = 0;
  let prvLen = 0;
  if (t.prv !== null) {
    if (offset !== 0) {
      warnOn(opts, 'offset on an append in sg_alloc_append_table_from_pages');
      return err('EINVAL', `append with offset ${offset}`);
    }
    prvLen = t.prv.length;
    first = appendMergeIntoPrv(t.prv, pages, maxSeg, opts);
    if (first === pages.length) {
      if (leftPages === 0) sgMarkEnd(t.prv);
      return ok(undefined);
    }
  }
  return addChunks(t, pages.slice(first), offset, size, maxSeg, leftPages, prvLen, opts);
}

/** The append merge: grow the previous entry by the pages that continue it. @returns pages consumed. */
function appendMergeIntoPrv(
  prv: Scatterlist,
  pages: readonly number[],
  maxSeg: number,
  opts: SgOptions,
): number {
  if (prv.pfn === null) throw new Error('BUG: append after an entry without a page');
  // The pfn just after prv's data; a prv ending inside a page yields that page's pfn (kernel quirk).
  const end = (BigInt(prv.pfn) << BigInt(PAGE_SHIFT)) + BigInt(prv.offset) + BigInt(prv.length);
  const nextPfn = Number(end >> BigInt(PAGE_SHIFT));
  if (pages[0] !== nextPfn) return 0;
  let last = nextPfn - 1;
  let used = 0;
  while (used < pages.length && pagesAreMergeable(pages[used]!, last, opts)) {
    if (prv.length + PAGE_SIZE > maxSeg) break;
    prv.length += PAGE_SIZE;
    last = pages[used]!;
    used++;
  }
  return used;
}

/** Count the chunks (future entries) of `pages` under `maxSeg` and the merge rule. */
function countChunks(pages: readonly number[], maxSeg: number, opts: SgOptions): number {
  let chunks = 1;
  let segLen = 0;
  for (let i = 1; i < pages.length; i++) {
    segLen += PAGE_SIZE;
    if (segLen >= maxSeg || !pagesAreMergeable(pages[i]!, pages[i - 1]!, opts)) {
      chunks++;
      segLen = 0;
    }
  }
  return chunks;
}

function addChunks(
  t: SgAppendTable,
  pages: readonly number[],
  offsetIn: number,
  sizeIn: bigint,
  maxSeg: number,
  leftPages: number,
  prvLen: number,
  opts: SgOptions,
): KResult<void> {
  const chunks = countChunks(pages, maxSeg, opts);
  let s = t.prv;
  let offset = offsetIn;
  let size = U64(sizeIn);
  let curPage = 0;
  let added = 0;
  for (let i = 0; i < chunks; i++) {
    let j = curPage + 1;
    let segLen = 0;
    for (; j < pages.length; j++) {
      segLen += PAGE_SIZE;
      if (segLen >= maxSeg || !pagesAreMergeable(pages[j]!, pages[j - 1]!, opts)) break;
    }
    s = getNextSg(t, s, chunks - i + leftPages, opts);
    if (s === null) {
      if (t.prv !== null) t.prv.length = prvLen;
      return err('ENOMEM', 'scatterlist chunk allocation failed');
    }
    const chunkSize = (((j - curPage) << PAGE_SHIFT) - offset) >>> 0;
    sgSetPage(s, pages[curPage]!, Number(size < BigInt(chunkSize) ? size : BigInt(chunkSize)), offset);
    added++;
    size = U64(size - BigInt(chunkSize));
    offset = 0;
    curPage = j;
  }
  t.sgt.nents += added;
  t.sgt.origNents = t.sgt.nents;
  t.prv = s;
  if (leftPages === 0 && s !== null) sgMarkEnd(s);
  return ok(undefined);
}

/**
 * `sg_alloc_table_from_pages_segment()`: a fresh table from `pages` (the append builder with
 * left_pages = 0), copied out into `sgt`.
 * @returns as `sgAllocAppendTableFromPages` (EINVAL, EOPNOTSUPP never — no append —, ENOMEM); on
 *   error nothing is left allocated.
 */
export function sgAllocTableFromPagesSegment(
  sgt: SgTable,
  pages: readonly number[],
  offset: number,
  size: Bytes,
  maxSegment: number,
  opts: SgOptions,
): KResult<void> {
  const append = newSgAppendTable();
  const res = sgAllocAppendTableFromPages(append, pages, offset, size, maxSegment, 0, opts);
  if (!res.ok) {
    sgFreeAppendTable(append);
    return res;
  }
  Object.assign(sgt, append.sgt);
  if (append.totalNents !== sgt.origNents)
    warnOn(opts, 'total_nents != orig_nents in sg_alloc_table_from_pages_segment');
  return ok(undefined);
}

/**
 * `sg_alloc_table_from_pages()`: `sgAllocTableFromPagesSegment` with max_segment = UINT_MAX.
 * @returns as `sgAllocTableFromPagesSegment`.
 */
export function sgAllocTableFromPages(
  sgt: SgTable,
  pages: readonly number[],
  offset: number,
  size: Bytes,
  opts: SgOptions,
): KResult<void> {
  return sgAllocTableFromPagesSegment(sgt, pages, offset, size, UINT_MAX, opts);
}
