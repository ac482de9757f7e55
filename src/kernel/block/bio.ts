// The block I/O unit (`struct bio`, block/bio.c, include/linux/blk_types.h): an operation, a start
// sector, and bio_vecs naming the memory. Built here from user memory for direct I/O
// (`bio_iov_iter_get_pages()`), from kernel pages (`bio_add_page()`), completed with `bio_endio()`.
//
// The P2PDMA rules (6.17+ "don't merge different kinds of P2P transfers in a single bio", and the
// 2026 iov_iter_extract_bvecs()): a bio holds either only normal memory or only pages of ONE P2PDMA
// pagemap; bio_add_page() refuses (returns 0) a page whose pagemap differs from the last bvec's, and
// a bio with P2P pages is flagged REQ_P2PDMA | REQ_NOMERGE so the DMA mapping code looks the P2P
// path up once per bio. Direct I/O asks GUP for P2P pages (FOLL_PCI_P2PDMA) only when the queue
// advertises BLK_FEAT_PCI_P2PDMA.

import { type PhysAddr, physAddr } from '../../hw/addr.js';
import { err, type KResult, ok } from '../errno.js';
import { unpinUserPage } from '../mm/gup.js';
import { type Page, pageToPhys } from '../mm/page.js';
import type { MmStruct } from '../mm/vma.js';
import { isPciP2pdmaPage } from '../pci/p2pdma-map.js';
import type { BlkStatus } from './blk-status.js';
import {
  type BioVec,
  type IovIter,
  ITER_ALLOW_P2PDMA,
  iovIterExtractBvecs,
  iovIterRevert,
  zoneDevicePagesHaveSamePgmap,
} from './iov-iter.js';

export type { BioVec } from './iov-iter.js';

export type ReqOp = 'read' | 'write';
/** `enum req_op` values. */
export const REQ_OP_VALUE: Readonly<Record<ReqOp, number>> = { read: 0, write: 1 };
/** `blk_op_str()`. */
export const REQ_OP_NAME: Readonly<Record<ReqOp, string>> = { read: 'READ', write: 'WRITE' };

// `enum req_flag_bits` from REQ_OP_BITS (8), checked against include/linux/blk_types.h: FAILFAST_DEV 8 ..
// SYNC 11, NOMERGE 14, IDLE 15, FUA 17, ... DRV 25, FS_PRIVATE 26, ATOMIC 27, P2PDMA 28 (added in 6.17).
export const REQ_SYNC = 1 << 11;
export const REQ_NOMERGE = 1 << 14;
export const REQ_IDLE = 1 << 15;
export const REQ_FUA = 1 << 17;
export const REQ_P2PDMA = 1 << 28;

export const SECTOR_SHIFT = 9;
/** `BIO_MAX_VECS`. */
export const BIO_MAX_VECS = 256;
/** `BIO_MAX_SIZE`: UINT_MAX, the largest `bi_size`. */
export const BIO_MAX_SIZE = 0xffff_ffff;

/** What a bio needs of the block device it targets. */
export interface BioTarget {
  /** Disk name for messages ("nvme0n1"). */
  readonly name: string;
  readonly logicalBlockSize: number;
  /** `queue_dma_alignment()`: buffers must start on (this + 1). */
  readonly dmaAlignment: number;
  /** BLK_FEAT_PCI_P2PDMA: the driver can DMA to and from PCI P2PDMA memory. */
  readonly pciP2pdma: boolean;
}

/** `struct bio`. */
export interface Bio {
  readonly bdev: BioTarget;
  readonly op: ReqOp;
  /** `bi_opf` without the op: REQ_* flags. */
  opf: number;
  /** `bi_iter.bi_sector`. */
  sector: number;
  /** `bi_iter.bi_size`: bytes from the iterator position to the end of this bio. */
  size: number;
  /** `bi_io_vec`: shared with split children, which see a window of it. */
  readonly vecs: BioVec[];
  /** `bi_iter.bi_idx` / `bi_bvec_done`: where this bio's window starts in `vecs`. */
  idx: number;
  done: number;
  readonly maxVecs: number;
  status: BlkStatus;
  /** BIO_PAGE_PINNED: the pages were pinned by GUP and must be unpinned at release. */
  pagePinned: boolean;
  /** The process whose pages these are (for unpinning). */
  mm: MmStruct | null;
  endIo: ((bio: Bio) => void) | null;
  /** `bi_private`. */
  priv: unknown;
  /** A split child completes into its parent (`bio_chain`). */
  parent: Bio | null;
  /** `__bi_remaining`: 1 + chained children not yet completed. */
  remaining: number;
}

/** `bio_alloc()` / `bio_init()`. */
export function bioAlloc(bdev: BioTarget, maxVecs: number, op: ReqOp, opf = 0): Bio {
  return {
    bdev,
    op,
    opf,
    sector: 0,
    size: 0,
    vecs: [],
    idx: 0,
    done: 0,
    maxVecs,
    status: 'ok',
    pagePinned: false,
    mm: null,
    endIo: null,
    priv: null,
    parent: null,
    remaining: 1,
  };
}

/** `bio_full()`: no room for another vec or for `len` more bytes. */
export const bioFull = (bio: Bio, len: number): boolean =>
  bio.vecs.length >= bio.maxVecs || bio.size > BIO_MAX_SIZE - len;

/** `bvec_phys()`. */
export const bvecPhys = (bv: BioVec): PhysAddr => physAddr(pageToPhys(bv.page) + BigInt(bv.offset));

/** `__bio_add_page()`: append a vec (the caller checked room); flags a P2P bio. */
function bioAddVec(bio: Bio, page: Page, len: number, offset: number): void {
  if (isPciP2pdmaPage(page)) bio.opf |= REQ_P2PDMA | REQ_NOMERGE;
  bio.vecs.push({ page, len, offset });
  bio.size += len;
}

/** `bvec_try_merge_page()`: extend the last vec when `page` continues it physically. */
function bvecTryMergePage(bv: BioVec, page: Page, len: number, offset: number): boolean {
  const end = bvecPhys(bv) + BigInt(bv.len);
  if (end !== pageToPhys(page) + BigInt(offset)) return false;
  // Order-0 folios: a vec may span pages only where struct pages are consecutive, which they are.
  bv.len += len;
  return true;
}

/**
 * `bio_add_page()`: add `len` bytes of `page` at `offset`, merging with the last vec when physically
 * contiguous. Takes no page reference (the caller owns the memory until the bio completes).
 * @returns `len`, or 0 when the bio is full or the page's pagemap differs from the last vec's.
 */
export function bioAddPage(bio: Bio, page: Page, len: number, offset: number): number {
  if (bio.size > BIO_MAX_SIZE - len) return 0;
  const last = bio.vecs.at(-1);
  if (last !== undefined) {
    if (!zoneDevicePagesHaveSamePgmap(last.page, page)) return 0;
    if (bvecTryMergePage(last, page, len, offset)) {
      bio.size += len;
      return len;
    }
  }
  if (bio.vecs.length >= bio.maxVecs) return 0;
  bioAddVec(bio, page, len, offset);
  return len;
}

/** Trim the last `n` bytes off the vecs (unpinning pages dropped entirely). */
function bioTrimTail(bio: Bio, n: number): void {
  let left = n;
  while (left > 0) {
    const bv = bio.vecs.at(-1)!;
    if (bv.len <= left) {
      left -= bv.len;
      bio.size -= bv.len;
      bio.vecs.pop();
      if (bio.pagePinned && bio.mm) unpinUserPage(bio.mm, bv.page);
    } else {
      bv.len -= left;
      bio.size -= left;
      left = 0;
    }
  }
}

/**
 * `bio_iov_iter_get_pages(bio, iter, len_align_mask)`: pin user pages from `iter` into the bio until
 * it is full, the iterator is empty, or the next page belongs to another pagemap; then align the size
 * down to the logical block size (what is cut goes back to the iterator).
 * @returns ok with the bio filled (bio.size > 0); EINVAL (a segment not aligned to the DMA
 *   alignment), EFAULT (nothing left after alignment, or an unmapped buffer), EREMOTEIO (P2P memory
 *   and a queue without P2PDMA), ENOMEM — the error only when no page at all was added.
 */
export function bioIovIterGetPages(bio: Bio, it: IovIter): KResult<void> {
  const flags = bio.bdev.pciP2pdma ? ITER_ALLOW_P2PDMA : 0;
  bio.pagePinned = true;
  bio.mm = it.mm;
  do {
    const before = bio.vecs.length;
    const r = iovIterExtractBvecs(
      it,
      bio.vecs,
      BIO_MAX_SIZE - bio.size,
      bio.maxVecs,
      bio.bdev.dmaAlignment,
      flags,
    );
    if (!r.ok || r.value === 0) {
      if (bio.vecs.length === 0) return r.ok ? err('EFAULT', 'no pages') : r;
      break;
    }
    for (let i = before; i < bio.vecs.length; i++)
      if (isPciP2pdmaPage(bio.vecs[i]!.page)) bio.opf |= REQ_P2PDMA | REQ_NOMERGE;
    bio.size += r.value;
  } while (it.count > 0 && !bioFull(bio, 0));
  const trim = bio.size & (bio.bdev.logicalBlockSize - 1);
  if (trim > 0) {
    iovIterRevert(it, trim);
    bioTrimTail(bio, trim);
  }
  if (bio.size === 0) return err('EFAULT', 'less than one logical block');
  return ok(undefined);
}

/**
 * `bio_release_pages()`: unpin the pages of a direct-I/O bio (BIO_PAGE_PINNED; one page per vec, as
 * iov_iter_extract_bvecs() builds them). A P2P page whose last reference this was goes back to its
 * pool. Bios built with bio_add_page() hold no page references and release nothing.
 */
export function bioReleasePages(bio: Bio): void {
  if (bio.pagePinned && bio.mm) for (const bv of bio.vecs) unpinUserPage(bio.mm, bv.page);
  bio.pagePinned = false;
}

/** One piece of memory in a bio's window (`bio_for_each_bvec`). */
export interface BioSeg {
  readonly page: Page;
  readonly offset: number;
  readonly len: number;
}

/** The pieces of the bio's current window, in order. */
export function bioSegs(bio: Bio): BioSeg[] {
  const out: BioSeg[] = [];
  let left = bio.size;
  for (let i = bio.idx, skip = bio.done; left > 0; i++, skip = 0) {
    const bv = bio.vecs[i];
    if (!bv) throw new Error('BUG: bio size runs past its vecs');
    const len = Math.min(bv.len - skip, left);
    out.push({ page: bv.page, offset: bv.offset + skip, len });
    left -= len;
  }
  return out;
}

/** `bio_advance()`: move the window start forward by `n` bytes. */
export function bioAdvance(bio: Bio, n: number): void {
  if (n > bio.size) throw new Error('BUG: bio_advance beyond the end');
  bio.size -= n;
  bio.sector += n >> SECTOR_SHIFT;
  let left = n;
  while (left > 0) {
    const room = bio.vecs[bio.idx]!.len - bio.done;
    if (left < room) {
      bio.done += left;
      left = 0;
    } else {
      left -= room;
      bio.idx++;
      bio.done = 0;
    }
  }
}

/**
 * `bio_split()` + `bio_chain()`: a child covering the first `n` bytes (sharing the vecs), chained to
 * `bio`, which keeps the rest. Preconditions: 0 < n < bio.size and n is sector aligned.
 */
export function bioSplit(bio: Bio, n: number): Bio {
  if (n <= 0 || n >= bio.size || n % 512 !== 0) throw new Error(`BUG: bio_split(${n}) of ${bio.size}`);
  const child: Bio = {
    ...bio,
    size: n,
    pagePinned: false,
    endIo: null,
    parent: bio,
    remaining: 1,
    status: 'ok',
  };
  bio.remaining++;
  bioAdvance(bio, n);
  return child;
}

/**
 * `bio_endio()`: complete a bio. A chained child passes its error to the parent (the first error
 * wins) and completes the parent when it was the last outstanding piece.
 */
export function bioEndio(bio: Bio): void {
  let b: Bio | null = bio;
  while (b !== null) {
    b.remaining--;
    if (b.remaining > 0) return;
    const parent: Bio | null = b.parent;
    if (parent !== null && b.status !== 'ok' && parent.status === 'ok') parent.status = b.status;
    if (parent === null) {
      b.endIo?.(b);
      return;
    }
    b = parent;
  }
}
