// User-memory I/O vectors (`struct iov_iter` of type ITER_IOVEC, lib/iov_iter.c): the buffers of a
// read()/write()/preadv() and how direct I/O takes pages out of them.
//
//   iter: seg 0 [base, len) -> seg 1 [base, len) ...     `count` bytes left, position (seg, off)
//   iov_iter_extract_pages(): pins the pages under the CURRENT segment only (up to maxsize and
//     maxpages), advances the iterator, and returns the bytes covered plus the offset in the first page
//   iov_iter_extract_bvecs() (2026 mainline, formerly the body of __bio_iov_iter_get_pages): turns
//     those pages into bio_vecs, one per page here (order-0 folios), and stops at the first page whose
//     ZONE_DEVICE pagemap differs from the previous one (never P2P and normal memory, never two
//     providers, in one bio); what it does not use is unpinned and the iterator reverted.

import { PAGE_SIZE, PAGE_SIZE_N } from '../../hw/addr.js';
import { err, type KResult, ok } from '../errno.js';
import { FOLL_PCI_P2PDMA, FOLL_WRITE, pinUserPagesFast, unpinUserPage } from '../mm/gup.js';
import type { Page } from '../mm/page.js';
import { type MmStruct, type UserAddr, userAddr } from '../mm/vma.js';

/** `struct iovec`. */
export interface Iovec {
  readonly base: UserAddr;
  readonly len: number;
}

/** `struct iov_iter` over user memory. `dest`: data goes into the buffers (a read). */
export interface IovIter {
  readonly mm: MmStruct;
  readonly dest: boolean;
  readonly segs: readonly Iovec[];
  seg: number;
  off: number;
  count: number;
}

/** `ITER_ALLOW_P2PDMA`: the extraction may return PCI P2PDMA pages. */
export const ITER_ALLOW_P2PDMA = 0x1;

/** `import_iovec()` / `iov_iter_init()`: an iterator over `segs` for a read (dest) or write. */
export function iovIterInit(mm: MmStruct, dest: boolean, segs: readonly Iovec[]): IovIter {
  const count = segs.reduce((s, v) => s + v.len, 0);
  return { mm, dest, segs, seg: 0, off: 0, count };
}

/** Skip empty segments so (seg, off) points at the next byte. */
function settle(it: IovIter): void {
  while (it.seg < it.segs.length && it.off >= it.segs[it.seg]!.len) {
    it.seg++;
    it.off = 0;
  }
}

/** `iov_iter_advance()`. */
export function iovIterAdvance(it: IovIter, n: number): void {
  if (n > it.count) throw new Error('BUG: iov_iter_advance beyond the end');
  let left = n;
  while (left > 0) {
    settle(it);
    const seg = it.segs[it.seg]!;
    const step = Math.min(left, seg.len - it.off);
    it.off += step;
    left -= step;
  }
  it.count -= n;
  settle(it);
}

/** `iov_iter_revert()`: step back `n` bytes. */
export function iovIterRevert(it: IovIter, n: number): void {
  let left = n;
  while (left > 0) {
    if (it.off === 0) {
      it.seg--;
      it.off = it.segs[it.seg]!.len;
      continue;
    }
    const step = Math.min(left, it.off);
    it.off -= step;
    left -= step;
  }
  it.count += n;
}

/** The user address of the next byte. */
export function iterIovAddr(it: IovIter): UserAddr {
  settle(it);
  const s = it.segs[it.seg];
  return userAddr(s ? s.base + BigInt(it.off) : 0n);
}

/** Bytes left in the current segment. */
export const iterIovLen = (it: IovIter): number => {
  settle(it);
  const s = it.segs[it.seg];
  return s ? s.len - it.off : 0;
};

/**
 * `iov_iter_is_aligned()` / `bdev_iter_is_aligned()`: every segment starts on `addrMask + 1` and has
 * a length that is a multiple of `lenMask + 1`.
 */
export function iovIterIsAligned(it: IovIter, addrMask: number, lenMask: number): boolean {
  return it.segs.every((s) => (s.base & BigInt(addrMask)) === 0n && (s.len & lenMask) === 0);
}

/** `iov_iter_npages()` capped at `max`: pages the remaining buffers touch. */
export function iovIterNpages(it: IovIter, max: number): number {
  let n = 0;
  for (let i = it.seg; i < it.segs.length && n < max; i++) {
    const s = it.segs[i]!;
    const start = s.base + BigInt(i === it.seg ? it.off : 0);
    const len = BigInt(s.len - (i === it.seg ? it.off : 0));
    if (len <= 0n) continue;
    const first = start / PAGE_SIZE_N;
    const last = (start + len - 1n) / PAGE_SIZE_N;
    n += Number(last - first + 1n);
  }
  return Math.min(n, max);
}

/** What iov_iter_extract_pages() hands back. */
export interface ExtractedPages {
  readonly pages: Page[];
  /** Offset of the first byte in the first page. */
  readonly offset: number;
  /** Bytes covered (the iterator advanced by this much). */
  readonly bytes: number;
}

/**
 * `iov_iter_extract_pages()` for user memory: pin the pages of the current segment, at most
 * `maxPages` and `maxSize` bytes. FOLL_WRITE when the data goes into the buffer, FOLL_PCI_P2PDMA with
 * ITER_ALLOW_P2PDMA.
 * @returns the pages and bytes; the GUP error (EFAULT, ENOMEM, EREMOTEIO, ...) when none was pinned.
 */
export function iovIterExtractPages(
  it: IovIter,
  maxSize: number,
  maxPages: number,
  flags: number,
): KResult<ExtractedPages> {
  const addr = iterIovAddr(it);
  const len = Math.min(iterIovLen(it), maxSize);
  if (len <= 0) return ok({ pages: [], offset: 0, bytes: 0 });
  const offset = Number(addr & (PAGE_SIZE_N - 1n));
  const want = Math.min(Math.ceil((offset + len) / PAGE_SIZE), maxPages);
  let gup = 0;
  if (it.dest) gup |= FOLL_WRITE;
  if ((flags & ITER_ALLOW_P2PDMA) !== 0) gup |= FOLL_PCI_P2PDMA;
  const r = pinUserPagesFast(it.mm, addr, want, gup);
  if (!r.ok) return r;
  const bytes = Math.min(r.value.pages.length * PAGE_SIZE - offset, len);
  iovIterAdvance(it, bytes);
  return ok({ pages: r.value.pages, offset, bytes });
}

/** A `struct bio_vec`: a piece of one page. */
export interface BioVec {
  readonly page: Page;
  len: number;
  readonly offset: number;
}

/** `zone_device_pages_have_same_pgmap()`: both normal memory, or both of one ZONE_DEVICE pagemap. */
export function zoneDevicePagesHaveSamePgmap(a: Page, b: Page): boolean {
  if ((a.pgmap === null) !== (b.pgmap === null)) return false;
  return a.pgmap === null || a.pgmap === b.pgmap;
}

/**
 * `iov_iter_extract_bvecs()`: append bio_vecs for up to `maxSize` bytes to `bv` (which may already
 * hold entries), at most `maxVecs` entries in all.
 * @returns the bytes added (0 is possible when `bv` was not empty and the next page's pagemap
 *   differs); EINVAL when the current segment is not aligned to `memAlignMask`; the GUP error when
 *   nothing could be pinned.
 */
export function iovIterExtractBvecs(
  it: IovIter,
  bv: BioVec[],
  maxSize: number,
  maxVecs: number,
  memAlignMask: number,
  flags: number,
): KResult<number> {
  if (((iterIovAddr(it) | BigInt(iterIovLen(it))) & BigInt(memAlignMask)) !== 0n)
    return err('EINVAL', 'a user buffer is not aligned to the device DMA alignment');
  const x = iovIterExtractPages(it, maxSize, maxVecs - bv.length, flags);
  if (!x.ok) return x;
  if (x.value.bytes === 0) return err('EFAULT', 'nothing to extract');
  const { pages, bytes } = x.value;
  let offset = x.value.offset;
  let left = bytes;
  let i = 0;
  while (left > 0) {
    const page = pages[i]!;
    const last = bv.at(-1);
    if (last !== undefined && !zoneDevicePagesHaveSamePgmap(last.page, page)) break;
    const len = Math.min(PAGE_SIZE - offset, left);
    bv.push({ page, len, offset });
    left -= len;
    offset = 0;
    i++;
  }
  iovIterRevert(it, left);
  for (; i < pages.length; i++) unpinUserPage(it.mm, pages[i]!);
  return ok(bytes - left);
}
