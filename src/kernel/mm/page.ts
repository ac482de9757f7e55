// struct page: pfn_to_page(), the refcount (get_page/put_page/folio_try_get) and what happens when the
// last reference goes (include/linux/mm.h, mm/swap.c `__folio_put`).
//
// A pfn has a struct page when it is System RAM or inside a registered dev_pagemap (ZONE_DEVICE);
// other physical addresses (MMIO without a pagemap) have none, as `pfn_valid()`/`pfn_to_online_page()`
// would say. Records are made on first reference:
//   RAM page         count 1 (someone owns it); dropping to 0 frees it to the page allocator.
//   ZONE_DEVICE page the profile's idle count; dropping to 0 calls free_zone_device_page(), which for
//                    P2PDMA returns that one page to the provider's pool.

import { PAGE_SHIFT, type PhysAddr, physAddr } from '../../hw/addr.js';
import { type DevPagemap, freeZoneDevicePage } from './memremap.js';
import type { MmState } from './mm.js';
import { ramIndexOfPfn } from './phys-map.js';

/** `PG_reserved`: set on ZONE_DEVICE pages by 6.1's memmap_init_zone_device() (not modelled for newest). */
export const PG_RESERVED = 1 << 0;

export interface Page {
  readonly pfn: number;
  /** `_refcount`. */
  refcount: number;
  /** Page flags (PG_*). */
  flags: number;
  /** The pagemap of a ZONE_DEVICE page (`page->pgmap`); null for RAM. */
  readonly pgmap: DevPagemap | null;
  /** NUMA node. */
  readonly nid: number;
}

/** Make (or find) the struct page of a pfn in a pagemap. */
function devicePage(mm: MmState, pgmap: DevPagemap, pfn: number): Page {
  const p: Page = {
    pfn,
    refcount: mm.profile.idleRefcount[pgmap.type],
    flags: mm.version === '6.1' ? PG_RESERVED : 0,
    pgmap,
    nid: pgmap.nid,
  };
  mm.pages.set(pfn, p);
  return p;
}

/**
 * `pfn_to_page()` guarded by `pfn_valid()`: the struct page of `pfn`, made on first reference.
 * @returns null when the pfn is neither RAM nor in a live or dying pagemap (no struct page exists).
 */
export function pfnToPage(mm: MmState, pfn: number): Page | null {
  const known = mm.pages.get(pfn);
  if (known !== undefined) return known;
  const pgmap = mm.pgmaps.lookup(pfn);
  if (pgmap !== null) return devicePage(mm, pgmap, pfn);
  const ri = ramIndexOfPfn(mm.physMap, pfn);
  if (ri < 0) return null;
  const p: Page = { pfn, refcount: 1, flags: 0, pgmap: null, nid: mm.physMap.ramPfnNode[ri]! };
  mm.pages.set(pfn, p);
  return p;
}

/** The struct page holding a physical address (`phys_to_page()`); null when there is none. */
export const physToPage = (mm: MmState, phys: PhysAddr): Page | null =>
  pfnToPage(mm, Number(phys >> BigInt(PAGE_SHIFT)));

/** `page_to_phys()`. */
export const pageToPhys = (page: Page): PhysAddr => physAddr(BigInt(page.pfn) << BigInt(PAGE_SHIFT));

/** `is_zone_device_page()`. */
export const isZoneDevicePage = (page: Page): boolean => page.pgmap !== null;

/** `page_pgmap()` (newest) / `page->pgmap` (6.1). */
export const pagePgmap = (page: Page): DevPagemap | null => page.pgmap;

/** `page_ref_count()`. */
export const pageRefCount = (page: Page): number => page.refcount;

/** `set_page_count()`. */
export function setPageCount(page: Page, n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new Error(`BUG: set_page_count(${n})`);
  page.refcount = n;
}

/**
 * `get_page()`: take a reference the caller knows is safe to take.
 * @throws on a page with count 0 (`VM_BUG_ON_PAGE(page_ref_zero_or_close_to_overflow())`): taking a
 *   reference to a free page is a bug; use tryGetPage() where the page may be free.
 */
export function getPage(page: Page): void {
  if (page.refcount <= 0) throw new Error(`BUG: get_page on pfn 0x${page.pfn.toString(16)} with refcount 0`);
  page.refcount++;
}

/** `folio_try_get()`: take a reference unless the count is 0 (what GUP uses). */
export function tryGetPage(page: Page): boolean {
  if (page.refcount <= 0) return false;
  page.refcount++;
  return true;
}

/**
 * `put_page()`: drop a reference; the last one frees the page. RAM goes back to the page allocator
 * (its record is dropped); a ZONE_DEVICE page goes to free_zone_device_page() (memremap.ts).
 * @throws when the count is already 0 (`VM_BUG_ON_PAGE(page_ref_count(page) == 0)`).
 */
export function putPage(mm: MmState, page: Page): void {
  if (page.refcount <= 0) throw new Error(`BUG: put_page on pfn 0x${page.pfn.toString(16)} with refcount 0`);
  page.refcount--;
  if (page.refcount > 0) return;
  if (page.pgmap === null) {
    mm.pages.delete(page.pfn);
    return;
  }
  freeZoneDevicePage(mm, page);
}
