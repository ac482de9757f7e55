// The page allocator, reduced to what the I/O paths need (mm/page_alloc.c `alloc_pages()` /
// `__free_pages()`): physically contiguous runs of System RAM pages for anonymous user memory, NVMe
// queues and PRP lists. Not a buddy allocator: free RAM is a sorted list of pfn runs per NUMA node,
// and an allocation takes the first run long enough (from the top of the node's RAM, as the kernel's
// allocations of high memory tend to land). Freed runs are merged back.
//
//   node 0 free runs: [0x100000 .. 0x3ffeff] [0x400000 .. 0x4fffff]   alloc(n): take n pfns from the
//                                                                      end of the first run that fits
//
// The state hangs off the kernel's MmState (a WeakMap, so mm.ts is untouched). Pages below 16 MiB
// (ZONE_DMA, firmware) and the default swiotlb pool are never handed out. Each page of a run gets a
// struct page with count 1 (the allocation's reference); `releasePage()` is put_page() that also
// returns a RAM page to this allocator when the count reaches 0.

import { PAGE_SHIFT } from '../../hw/addr.js';
import type { MmState } from './mm.js';
import { type Page, pfnToPage, putPage } from './page.js';

interface FreeRuns {
  /** Per node: free runs as parallel arrays of first and last pfn, sorted by first. */
  readonly first: number[][];
  readonly last: number[][];
  allocatedPages: number;
}

const states = new WeakMap<MmState, FreeRuns>();

/** Lowest pfn ever allocated: 16 MiB (ZONE_DMA and early firmware reservations stay untouched). */
const LOW_LIMIT_PFN = (16 * 1024 * 1024) >> PAGE_SHIFT;
/** The default swiotlb pool (src/kernel/dma/dma-context.ts): 64 MiB at 0x7c000000. */
const SWIOTLB_FIRST_PFN = 0x7c000000 / 4096;
const SWIOTLB_LAST_PFN = 0x80000000 / 4096 - 1;

function addRun(fr: FreeRuns, nid: number, first: number, last: number): void {
  if (last < first) return;
  fr.first[nid] ??= [];
  fr.last[nid] ??= [];
  fr.first[nid].push(first);
  fr.last[nid].push(last);
}

function freeRunsOf(mm: MmState): FreeRuns {
  const have = states.get(mm);
  if (have) return have;
  const fr: FreeRuns = { first: [], last: [], allocatedPages: 0 };
  const pm = mm.physMap;
  for (let i = 0; i < pm.ramPfnFirst.length; i++) {
    const nid = pm.ramPfnNode[i]!;
    const lo = Math.max(pm.ramPfnFirst[i]!, LOW_LIMIT_PFN);
    const hi = pm.ramPfnLast[i]!;
    // Cut the swiotlb pool out of the run that holds it.
    if (lo <= SWIOTLB_LAST_PFN && hi >= SWIOTLB_FIRST_PFN) {
      addRun(fr, nid, lo, SWIOTLB_FIRST_PFN - 1);
      addRun(fr, nid, SWIOTLB_LAST_PFN + 1, hi);
    } else addRun(fr, nid, lo, hi);
  }
  states.set(mm, fr);
  return fr;
}

/**
 * `alloc_pages_node(nid, order)` for `nrPages` contiguous pages (any count, not only powers of two).
 * Falls back to other nodes when `nid` has no run long enough, as the zonelist does.
 * @returns the first pfn, or null when no node has `nrPages` contiguous free pages (the kernel's NULL).
 */
export function allocPages(mm: MmState, nrPages: number, nid = 0): number | null {
  if (!Number.isInteger(nrPages) || nrPages <= 0) throw new Error(`BUG: alloc_pages(${nrPages})`);
  const fr = freeRunsOf(mm);
  const order = [nid, ...fr.first.keys()].filter((n, i, a) => a.indexOf(n) === i);
  for (const n of order) {
    const firsts = fr.first[n];
    const lasts = fr.last[n];
    if (!firsts || !lasts) continue;
    for (let i = firsts.length - 1; i >= 0; i--) {
      const len = lasts[i]! - firsts[i]! + 1;
      if (len < nrPages) continue;
      const pfn = lasts[i]! - nrPages + 1;
      if (len === nrPages) {
        firsts.splice(i, 1);
        lasts.splice(i, 1);
      } else lasts[i] = pfn - 1;
      fr.allocatedPages += nrPages;
      for (let p = pfn; p < pfn + nrPages; p++) {
        const page = pfnToPage(mm, p);
        if (page === null || page.pgmap !== null)
          throw new Error('BUG: alloc_pages handed out a non-RAM pfn');
        page.refcount = 1;
      }
      return pfn;
    }
  }
  return null;
}

/** Give one page back to its node's free runs (merging with neighbours). */
function freeOne(mm: MmState, fr: FreeRuns, page: Page): void {
  const nid = page.nid;
  fr.first[nid] ??= [];
  fr.last[nid] ??= [];
  const firsts = fr.first[nid];
  const lasts = fr.last[nid];
  const pfn = page.pfn;
  let i = 0;
  while (i < firsts.length && firsts[i]! <= pfn) i++;
  if (i > 0 && lasts[i - 1]! >= pfn) throw new Error(`BUG: double free of pfn 0x${pfn.toString(16)}`);
  const joinPrev = i > 0 && lasts[i - 1] === pfn - 1;
  const joinNext = i < firsts.length && firsts[i] === pfn + 1;
  if (joinPrev && joinNext) {
    lasts[i - 1] = lasts[i]!;
    firsts.splice(i, 1);
    lasts.splice(i, 1);
  } else if (joinPrev) lasts[i - 1] = pfn;
  else if (joinNext) firsts[i] = pfn;
  else {
    firsts.splice(i, 0, pfn);
    lasts.splice(i, 0, pfn);
  }
  fr.allocatedPages--;
  mm.pages.delete(pfn);
}

/**
 * `put_page()` for pages that may have come from this allocator: drop a reference and, when it was
 * the last one on a RAM page, return the page to the free runs. ZONE_DEVICE pages take the pagemap's
 * free path (page.ts) as usual.
 */
export function releasePage(mm: MmState, page: Page): void {
  const ram = page.pgmap === null;
  const last = page.refcount === 1;
  putPage(mm, page);
  if (ram && last) freeOne(mm, freeRunsOf(mm), page);
}

/** `__free_pages()` of a run from allocPages(): drop the allocation's reference on every page. */
export function freePages(mm: MmState, pfn: number, nrPages: number): void {
  for (let p = pfn; p < pfn + nrPages; p++) {
    const page = mm.pages.get(p);
    if (!page) throw new Error(`BUG: __free_pages of pfn 0x${p.toString(16)} that is not allocated`);
    releasePage(mm, page);
  }
}

/** Pages currently allocated (for leak checks in tests and run summaries). */
export const allocatedPages = (mm: MmState): number => freeRunsOf(mm).allocatedPages;
