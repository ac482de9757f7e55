// ZONE_DEVICE pagemaps: `struct dev_pagemap` (include/linux/memremap.h) and mm/memremap.c's
// memremap_pages()/memunmap_pages(), get_dev_pagemap() and the free path of a ZONE_DEVICE page.
//
// Registering a pagemap runs the kernel's checks in its order (pagemap_range() and the
// arch_add_memory() -> __add_pages() -> sparse_add_section() path below it):
//
//   start pfn already in a pagemap  WARN "Conflicting mapping in same section"        -ENOMEM
//   end pfn already in a pagemap    WARN "Conflicting mapping in same section"        -ENOMEM
//   range touches System RAM        WARN_ONCE "attempted on ram|mixed region a-b"     -ENXIO
//   beyond the direct map           "Hotplug memory [..] exceeds maximum addressable" -EINVAL
//   start or size not 2 MiB aligned WARN "Misaligned __add_pages start: .. end: .."   -EINVAL
//   a 2 MiB subsection already present (a pagemap enclosed by the new one)             -EEXIST
//
// Unregistering kills the pagemap's percpu ref and waits until every reference is gone; the model
// runs the rest of the teardown (the pfns leave the index) from the ref's release.

import { type Bytes, bytes, hex, PAGE_SHIFT, type PhysAddr } from '../../hw/addr.js';
import type { PciFunction } from '../../hw/pci.js';
import { err, type KResult, ok } from '../errno.js';
import type { P2pdmaProvider } from '../pci/p2pdma-provider.js';
import { type KVirtAddr, MAX_PHYSMEM_BITS, physToVirt } from './direct-map.js';
import { type MmState, mmWarn, mmWarnOnce } from './mm.js';
import type { Page } from './page.js';
import {
  type PercpuRef,
  percpuRefGetMany,
  percpuRefInit,
  percpuRefKill,
  percpuRefPutMany,
  percpuRefTrygetLive,
} from './percpu-ref.js';
import { regionIntersectsRam } from './phys-map.js';

/** `enum memory_type`: MEMORY_DEVICE_PRIVATE, _COHERENT, _FS_DAX, _GENERIC, _PCI_P2PDMA. */
export type PgmapType = 'private' | 'coherent' | 'fs-dax' | 'generic' | 'pci-p2pdma';

/** `struct dev_pagemap_ops`, the part the model uses. */
export interface DevPagemapOps {
  /** `page_free` (6.1) / `folio_free` (newest): the last reference to a page went away. */
  readonly pageFree?: ((page: Page) => void) | undefined;
}

export interface DevPagemapSpec {
  readonly type: PgmapType;
  /** First and last byte (`struct range`). */
  readonly start: PhysAddr;
  readonly end: PhysAddr;
  readonly ops?: DevPagemapOps | undefined;
  /** The device that registered it (devm owner; `pgmap->owner` for private memory). */
  readonly owner?: PciFunction | null | undefined;
  /** P2PDMA: the provider (`pci_p2pdma_pagemap.mem` newest; provider + bus_offset in 6.1). */
  readonly provider?: P2pdmaProvider | null | undefined;
  readonly nid?: number | undefined;
}

/** `struct dev_pagemap` with one range. */
export interface DevPagemap {
  /** Dense id, what phyr's `PgmapOf` returns. */
  readonly id: number;
  readonly type: PgmapType;
  readonly start: PhysAddr;
  readonly end: PhysAddr;
  readonly firstPfn: number;
  readonly lastPfn: number;
  readonly ops: DevPagemapOps | null;
  readonly owner: PciFunction | null;
  readonly provider: P2pdmaProvider | null;
  readonly nid: number;
  /** `pgmap->ref`. */
  readonly ref: PercpuRef;
  /** 'new' until memremap succeeds, 'live', 'dying' while memunmap waits, 'dead' after. */
  state: 'new' | 'live' | 'dying' | 'dead';
}

/** Fill a dev_pagemap (the caller's devm_kzalloc and field setup before devm_memremap_pages()). */
export function createDevPagemap(mm: MmState, spec: DevPagemapSpec): DevPagemap {
  const shift = BigInt(PAGE_SHIFT);
  return {
    id: mm.nextPgmapId++,
    type: spec.type,
    start: spec.start,
    end: spec.end,
    firstPfn: Number(spec.start >> shift),
    lastPfn: Number(spec.end >> shift),
    ops: spec.ops ?? null,
    owner: spec.owner ?? null,
    provider: spec.provider ?? null,
    nid: spec.nid ?? 0,
    ref: percpuRefInit(),
    state: 'new',
  };
}

/** Bytes of the pagemap's range (`range_len()`). */
export const pgmapLen = (p: DevPagemap): Bytes => bytes(p.end - p.start + 1n);
/** Pages of the range (`pfn_len()` without an altmap). */
const pfnLen = (p: DevPagemap): number => p.lastPfn - p.firstPfn + 1;

/** `#%llx` as printk prints it: 0 without the prefix. */
export const hashLlx = (v: bigint): string => (v === 0n ? '0' : hex(v));

const PAGES_PER_SUBSECTION = 512; // 2 MiB of 4 KiB pages with SPARSEMEM_VMEMMAP on x86-64
const MAX_PHYS = (1n << BigInt(MAX_PHYSMEM_BITS)) - 1n;

/** The type switch at the top of memremap_pages(). */
function checkType(mm: MmState, p: DevPagemap): KResult<void> {
  if (p.type !== 'private' && p.type !== 'coherent') return ok(undefined);
  if (!p.ops?.pageFree) {
    mmWarn(mm, `Missing ${mm.profile.freeOpName} method`);
    return err('EINVAL', `memremap_pages: ${p.type} pagemap without ${mm.profile.freeOpName}`);
  }
  if (!p.owner) {
    mmWarn(mm, 'Missing owner');
    return err('EINVAL', `memremap_pages: ${p.type} pagemap without an owner`);
  }
  return ok(undefined);
}

/** pagemap_range() and the hotplug checks below it, in the kernel's order. */
function pagemapRange(mm: MmState, p: DevPagemap): KResult<void> {
  if (mm.pgmaps.lookup(p.firstPfn) !== null || mm.pgmaps.lookup(p.lastPfn) !== null) {
    mmWarn(mm, 'Conflicting mapping in same section');
    return err('ENOMEM', `memremap_pages: ${hex(p.start)}-${hex(p.end)} overlaps a registered pagemap`);
  }
  const size = pgmapLen(p);
  const isRam = regionIntersectsRam(mm.physMap, p.start, size);
  if (isRam !== 'disjoint') {
    const what = isRam === 'mixed' ? 'mixed' : 'ram';
    mmWarnOnce(mm, 'pagemap_range ram', `attempted on ${what} region ${hashLlx(p.start)}-${hashLlx(p.end)}`);
    return err('ENXIO', `memremap_pages: ${hex(p.start)}-${hex(p.end)} is System RAM (${what})`);
  }
  // mhp_range_allowed(): [start, start + size) must not wrap and must end inside the direct map.
  const endEx = BigInt.asUintN(64, p.start + size);
  if (!(p.start < endEx && endEx - 1n <= MAX_PHYS)) {
    mm.log.printk(
      'warn',
      `Hotplug memory [${hashLlx(p.start)}-${hashLlx(endEx)}] exceeds maximum addressable range [0-${hashLlx(MAX_PHYS)}]`,
    );
    return err(
      'EINVAL',
      `memremap_pages: ${hex(p.start)} + ${hex(size)} is beyond MAX_PHYSMEM_BITS (${MAX_PHYSMEM_BITS})`,
    );
  }
  const n = pfnLen(p);
  if (p.firstPfn % PAGES_PER_SUBSECTION !== 0 || n % PAGES_PER_SUBSECTION !== 0) {
    mmWarn(
      mm,
      `Misaligned __add_pages start: ${hashLlx(BigInt(p.firstPfn))} end: ${hashLlx(BigInt(p.lastPfn))}`,
    );
    return err('EINVAL', `memremap_pages: ${hex(p.start)}-${hex(p.end)} is not 2 MiB aligned (subsection)`);
  }
  // Both ranges are subsection aligned by now, so sharing a subsection means overlapping: a pagemap
  // enclosed by the new range passed the start/end checks above and is caught here.
  if (mm.pgmaps.overlapping(p.firstPfn, p.lastPfn).length > 0) {
    return err('EEXIST', `memremap_pages: a subsection of ${hex(p.start)}-${hex(p.end)} is already present`);
  }
  return ok(undefined);
}

/**
 * `devm_memremap_pages()` / `memremap_pages()`: give [start, end] ZONE_DEVICE struct pages and a
 * direct mapping. Preconditions: the pagemap is new (from createDevPagemap).
 * @returns the kernel virtual address of the range start (`__va(start)`); errors, in order:
 *   EINVAL (private/coherent without free op or owner), ENOMEM (start or end pfn in a pagemap),
 *   ENXIO (System RAM), EINVAL (beyond MAX_PHYSMEM_BITS), EINVAL (not 2 MiB aligned),
 *   EEXIST (a subsection is already present).
 */
export function devmMemremapPages(mm: MmState, p: DevPagemap): KResult<KVirtAddr> {
  if (p.state !== 'new') throw new Error(`BUG: memremap_pages on a ${p.state} pagemap`);
  const t = checkType(mm, p);
  if (!t.ok) return t;
  const r = pagemapRange(mm, p);
  if (!r.ok) return r;
  mm.pgmaps.insert(p);
  // Each page holds a pgmap reference from here until memunmap_pages() drops them all at once.
  if (p.type !== 'private' && p.type !== 'coherent') percpuRefGetMany(p.ref, pfnLen(p));
  p.state = 'live';
  return ok(physToVirt(p.start));
}

/** pageunmap_range(): the pfns leave the index and their struct pages go away. */
function pageunmapRange(mm: MmState, p: DevPagemap): void {
  mm.pgmaps.remove(p);
  for (const [pfn, page] of mm.pages) if (page.pgmap === p) mm.pages.delete(pfn);
  p.state = 'dead';
}

/**
 * `memunmap_pages()` (the devm release): kill the ref, drop the per-page references and wait for the
 * rest. The kernel blocks in wait_for_completion() until every reference taken on the pagemap (P2P:
 * one per pool allocation and per user-mapped page) is dropped; the pagemap and its struct pages stay
 * valid meanwhile and new tryget_live calls fail. The model returns at once and finishes the teardown
 * when the last reference goes; `onDone` runs then.
 * @returns 'done' when the teardown finished now, 'waiting' when references are still held.
 */
export function memunmapPages(mm: MmState, p: DevPagemap, onDone: () => void = () => {}): 'done' | 'waiting' {
  if (p.state !== 'live') throw new Error(`BUG: memunmap_pages on a ${p.state} pagemap`);
  p.state = 'dying';
  p.ref.onRelease = () => {
    pageunmapRange(mm, p);
    onDone();
  };
  percpuRefKill(p.ref);
  if (p.type !== 'private' && p.type !== 'coherent') percpuRefPutMany(p.ref, pfnLen(p));
  // The release callback may have run inside the puts above.
  return (p.state as DevPagemap['state']) === 'dead' ? 'done' : 'waiting';
}

/** References still held on a pagemap beyond its per-page ones (what memunmap_pages waits for). */
export const pgmapOutstandingRefs = (p: DevPagemap): number =>
  p.state === 'live'
    ? p.ref.count - 1 - (p.type === 'private' || p.type === 'coherent' ? 0 : pfnLen(p))
    : p.ref.count;

/** `get_dev_pagemap()`: the pagemap of `pfn` with a live reference taken; null if none or dying. */
export function getDevPagemap(mm: MmState, pfn: number): DevPagemap | null {
  const p = mm.pgmaps.lookup(pfn);
  return p !== null && percpuRefTrygetLive(p.ref) ? p : null;
}

/** `put_dev_pagemap()`. */
export const putDevPagemap = (p: DevPagemap): void => percpuRefPutMany(p.ref, 1);

/**
 * `free_zone_device_page()` (6.1) / `free_zone_device_folio()` (newest): a ZONE_DEVICE page's count
 * reached 0. Calls the pagemap's free callback where the profile does (WARN_ON_ONCE and nothing else
 * when it is missing), drops the page's pgmap reference for private/coherent memory, and resets the
 * count to 1 where the profile does.
 */
export function freeZoneDevicePage(mm: MmState, page: Page): void {
  const p = page.pgmap;
  if (p === null) throw new Error('BUG: free_zone_device_page on a page without a pagemap');
  const prof = mm.profile;
  if (prof.freeCallsOp[p.type]) {
    const op = p.ops?.pageFree;
    if (!op) {
      mmWarnOnce(
        mm,
        `${prof.freeFnName} no op`,
        `WARNING: mm/memremap.c: ${prof.freeFnName}: WARN_ON_ONCE(!pgmap->ops || !pgmap->ops->${prof.freeOpName})`,
      );
      return;
    }
    op(page);
    if (p.type === 'private' || p.type === 'coherent') putDevPagemap(p);
  }
  if (prof.resetCountAfterFree[p.type]) page.refcount = 1;
}
