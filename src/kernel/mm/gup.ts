// get_user_pages / pin_user_pages (mm/gup.c): turn a range of user addresses into referenced struct
// pages for DMA, and release them again. The P2PDMA rule lives here: a page of PCI P2PDMA memory is
// refused unless the caller passed FOLL_PCI_P2PDMA (the block layer does so only for queues that can
// DMA to peer memory).
//
//   pin_user_pages_fast(start, n, flags)
//     per page: vma_lookup ── none ──────────────────────────────> -EFAULT
//               check_vma_flags (VM_IO|VM_PFNMAP, VM_READ/VM_WRITE) > -EFAULT
//               follow_page_pte ── no pte ── faultin_page ───────> retry, or -EFAULT (SIGBUS) / -ENOMEM
//               try_grab_folio: count <= 0 ───────────────────────> -ENOMEM (WARN_ON_ONCE)
//                               P2P page without FOLL_PCI_P2PDMA ─> -EREMOTEIO
//                               FOLL_PIN: count += GUP_PIN_COUNTING_BIAS; FOLL_GET: count += 1
//     stops at the first failure: returns the pages pinned so far, or the error if there are none.
//
// The error for a P2P page without the flag is -EREMOTEIO in try_grab_folio() (verified in mm/gup.c;
// the reference document marks it [recalled]). GUP-fast gives up at the same page (it returns NULL
// for it) and the slow path then reports the error, so the visible result is the same.

import { PAGE_SHIFT, PAGE_SIZE_N } from '../../hw/addr.js';
import { type Errno, err, type KResult, ok } from '../errno.js';
import { isPciP2pdmaPage } from '../pci/p2pdma-map.js';
import { mmWarnOnce } from './mm.js';
import { type Page, pfnToPage } from './page.js';
import { releasePage } from './page-alloc.js';
import {
  followPte,
  handleMmFault,
  type MmStruct,
  TASK_SIZE,
  type UserAddr,
  VM_IO,
  VM_PFNMAP,
  VM_READ,
  VM_WRITE,
  vmaLookup,
} from './vma.js';

// enum gup_flags (include/linux/mm_types.h, newest values).
export const FOLL_WRITE = 1 << 0;
export const FOLL_GET = 1 << 1;
export const FOLL_FORCE = 1 << 3;
export const FOLL_NOFAULT = 1 << 5;
export const FOLL_LONGTERM = 1 << 8;
export const FOLL_PCI_P2PDMA = 1 << 10;
// Internal flags (mm/internal.h).
export const FOLL_TOUCH = 1 << 16;
export const FOLL_PIN = 1 << 19;

/** `GUP_PIN_COUNTING_BIAS`: a pin of a small folio adds this to the page count. */
export const GUP_PIN_COUNTING_BIAS = 1024;

/** Flags pin_user_pages_fast() accepts from callers (`gup_fast_fallback()`'s WARN_ON_ONCE mask). */
const CALLER_FLAGS = FOLL_WRITE | FOLL_LONGTERM | FOLL_FORCE | FOLL_NOFAULT | FOLL_PCI_P2PDMA;

/** Counters a run reports. */
export interface GupStats {
  pinned: number;
  unpinned: number;
  refusedP2p: number;
}

const stats = new WeakMap<MmStruct, GupStats>();
/** Pin counters of an address space. */
export function gupStats(mm: MmStruct): GupStats {
  let s = stats.get(mm);
  if (!s) {
    s = { pinned: 0, unpinned: 0, refusedP2p: 0 };
    stats.set(mm, s);
  }
  return s;
}

/**
 * `try_grab_folio()` on an order-0 folio. @returns ok, ENOMEM for a page with count <= 0 (with the
 * kernel's WARN_ON_ONCE), EREMOTEIO for a P2PDMA page without FOLL_PCI_P2PDMA.
 */
export function tryGrabFolio(mm: MmStruct, page: Page, flags: number): KResult<void> {
  if (page.refcount <= 0) {
    mmWarnOnce(
      mm.kmm,
      'try_grab_folio',
      'WARNING: mm/gup.c: try_grab_folio: WARN_ON_ONCE(folio_ref_count(folio) <= 0)',
    );
    return err('ENOMEM', `pfn 0x${page.pfn.toString(16)} has no references`);
  }
  if ((flags & FOLL_PCI_P2PDMA) === 0 && isPciP2pdmaPage(page)) {
    gupStats(mm).refusedP2p++;
    return err(
      'EREMOTEIO',
      `pfn 0x${page.pfn.toString(16)} is PCI P2PDMA memory and FOLL_PCI_P2PDMA is not set`,
    );
  }
  if ((flags & FOLL_PIN) !== 0) page.refcount += GUP_PIN_COUNTING_BIAS;
  else if ((flags & FOLL_GET) !== 0) page.refcount += 1;
  return ok(undefined);
}

/** `check_vma_flags()` without FOLL_FORCE/FOLL_ANON/secretmem: @returns EFAULT when refused. */
function checkVmaFlags(vmFlags: number, flags: number): KResult<void> {
  if ((vmFlags & (VM_IO | VM_PFNMAP)) !== 0) return err('EFAULT', 'VM_IO or VM_PFNMAP mapping');
  const write = (flags & FOLL_WRITE) !== 0;
  if (write && (vmFlags & VM_WRITE) === 0) return err('EFAULT', 'mapping is not writable');
  if (!write && (vmFlags & VM_READ) === 0) return err('EFAULT', 'mapping is not readable');
  return ok(undefined);
}

/** One page of `__get_user_pages()`: look up (faulting in) and grab. */
function getOnePage(mm: MmStruct, addr: bigint, flags: number): KResult<Page> {
  const vma = vmaLookup(mm, addr);
  if (vma === null) return err('EFAULT', `no VMA at 0x${addr.toString(16)}`);
  const c = checkVmaFlags(vma.flags, flags);
  if (!c.ok) return c;
  let pte = followPte(vma, addr);
  if (pte === null) {
    if ((flags & FOLL_NOFAULT) !== 0) return err('EFAULT', 'FOLL_NOFAULT and the page is not present');
    const f = handleMmFault(mm, vma, addr);
    if (!f.ok) return f;
    pte = f.value;
  }
  const page = pfnToPage(mm.kmm, pte.pfn);
  // A pte without a struct page (pfn map): the caller wants pages, so follow_pfn_pte's -EEXIST.
  if (page === null) return err('EEXIST', `pfn 0x${pte.pfn.toString(16)} has no struct page`);
  const g = tryGrabFolio(mm, page, flags);
  return g.ok ? ok(page) : g;
}

/** The result of a GUP call: the pages pinned, and why it stopped early (if it did). */
export interface GupResult {
  readonly pages: Page[];
  /** Set when fewer pages than asked were pinned: the error the next page got. */
  readonly stoppedBy: Errno | null;
}

/**
 * `pin_user_pages_fast(start, nr_pages, gup_flags, pages)`: pin `nrPages` pages from `start`
 * (rounded down to a page) with FOLL_PIN. Release them with unpinUserPages().
 * @returns the pinned pages, possibly fewer than asked (stoppedBy then names the next page's error);
 *   an error only when no page could be pinned: EINVAL (flags outside the accepted set, FOLL_GET or
 *   FOLL_PIN from the caller), EFAULT (beyond TASK_SIZE, no VMA, not permitted, SIGBUS on fault),
 *   ENOMEM (out of memory, or a page without references), EREMOTEIO (P2PDMA page without
 *   FOLL_PCI_P2PDMA), EEXIST (a pte without a struct page).
 */
export function pinUserPagesFast(
  mm: MmStruct,
  start: UserAddr,
  nrPages: number,
  gupFlags: number,
): KResult<GupResult> {
  if ((gupFlags & ~CALLER_FLAGS) !== 0) {
    mmWarnOnce(
      mm.kmm,
      'gup_fast_fallback flags',
      'WARNING: mm/gup.c: gup_fast_fallback: WARN_ON_ONCE(gup_flags & ~(...))',
    );
    return err('EINVAL', `unsupported gup flags 0x${gupFlags.toString(16)}`);
  }
  const base = start & ~(PAGE_SIZE_N - 1n);
  if (base + (BigInt(nrPages) << BigInt(PAGE_SHIFT)) > TASK_SIZE)
    return err('EFAULT', 'range beyond TASK_SIZE');
  const flags = gupFlags | FOLL_PIN | FOLL_TOUCH;
  const pages: Page[] = [];
  for (let i = 0; i < nrPages; i++) {
    const r = getOnePage(mm, base + (BigInt(i) << BigInt(PAGE_SHIFT)), flags);
    if (!r.ok) {
      if (pages.length === 0) return r;
      gupStats(mm).pinned += pages.length;
      return ok({ pages, stoppedBy: r.errno });
    }
    pages.push(r.value);
  }
  gupStats(mm).pinned += pages.length;
  return ok({ pages, stoppedBy: null });
}

/**
 * `unpin_user_page()` / `gup_put_folio(folio, 1, FOLL_PIN)`: drop one pin. The last reference frees
 * the page (a P2PDMA page goes back to its provider's pool).
 * @throws when the page holds no pin (the kernel's sanity check: count below the bias).
 */
export function unpinUserPage(mm: MmStruct, page: Page): void {
  if (page.refcount < GUP_PIN_COUNTING_BIAS)
    throw new Error(`BUG: unpin_user_page on pfn 0x${page.pfn.toString(16)} with count ${page.refcount}`);
  page.refcount -= GUP_PIN_COUNTING_BIAS - 1;
  releasePage(mm.kmm, page);
  gupStats(mm).unpinned++;
}

/** `unpin_user_pages()`. */
export function unpinUserPages(mm: MmStruct, pages: readonly Page[]): void {
  for (const p of pages) unpinUserPage(mm, p);
}

/** `folio_maybe_dma_pinned()` for an order-0 folio: count >= GUP_PIN_COUNTING_BIAS. */
export const pageMaybeDmaPinned = (page: Page): boolean => page.refcount >= GUP_PIN_COUNTING_BIAS;
