// The IOVA allocator of drivers/iommu/iova.c and include/linux/iova.h: a red-black tree of
// allocated pfn ranges searched top-down from a cached node, plus per-CPU range caches.
//
//   pfn 0   start_pfn                     dma_32bit_pfn (4 GiB)                    anchor (~0UL)
//   |-------|---------------[##]-[####]---|---------------[#]-[###]-------- ... ---|
//                  cached32_node ^                  cached_node ^
//   allocations below 4 GiB walk back from cached32_node, others from cached_node; on failure the
//   walk retries once from the limit down to just above where it started (iova_find_limit()).
//
// Exactly the rbtree algorithm of 6.1 and mainline (the 2026 out-of-tree maple-tree rework is not
// modelled). The tree is iova-rbtree.ts, the caches iova-rcache.ts. PFNs are numbers (see the
// rbtree file); the domain's granule is at least 2 KiB so every pfn of a 64-bit space is exact.

import { type Bytes, bytes, type DmaAddr, dmaAddr, PAGE_SIZE } from '../../hw/addr.js';
import { err, type KResult, ok } from '../errno.js';
import type { KernelVersion } from '../profile.js';
import { IovaRbTree, NIL } from './iova-rbtree.js';
import {
  type DelayScheduler,
  IOVA_RANGE_CACHE_MAX_SIZE,
  type IovaRcache,
  initRcaches,
  iovaDepotWorkFunc,
  newRcacheStats,
  orderBase2,
  type RcacheEnv,
  type RcacheStats,
  rcacheGet,
  rcacheInsert,
  freeCpuCachedIovas as rcFreeCpu,
  freeGlobalCachedIovas as rcFreeGlobal,
} from './iova-rcache.js';

/** `IOVA_ANCHOR` (~0UL) as a double: above every pfn. */
export const IOVA_ANCHOR = 2 ** 64;

/** `struct iova`: an allocated (or reserved) range of pfns, inclusive. */
export interface IovaRange {
  readonly pfnLo: number;
  readonly pfnHi: number;
}

export interface IovaDomainOptions {
  /** Kernel profile (rcache depot: 6.1 array of 32 vs 6.7+ list with delayed reclaim). Default newest. */
  readonly version?: KernelVersion | undefined;
  /** Runs the 6.7+ depot work after 100 ms of virtual time (the sim Engine fits); else manual ticks. */
  readonly scheduler?: DelayScheduler | undefined;
  /** Fault seam: true fails `alloc_iova_mem()` ('iova') or `iova_magazine_alloc()` ('magazine'). */
  readonly allocFails?: ((what: 'iova' | 'magazine') => boolean) | undefined;
}

export interface IovaStats extends RcacheStats {
  /** Ranges allocated from the tree. */
  treeAllocs: number;
  /** Tree allocations that failed (-ENOMEM), including max32 fast fails. */
  treeAllocFailures: number;
  /** Failures decided by `max32_alloc_size` before walking the tree. */
  max32FastFails: number;
  /** alloc_iova_fast() failures that flushed every CPU's cache and the depots before retrying. */
  rcacheFlushes: number;
  /** alloc_iova_fast() sizes too large for any cache bucket (>= 64 pages after rounding). */
  rcacheBypass: number;
}

/** `struct iova_domain`. */
export class IovaDomain {
  readonly version: KernelVersion;
  readonly granule: number;
  readonly shift: number;
  readonly startPfn: number;
  readonly dma32bitPfn: number;
  /** Size of the last failed allocation below 4 GiB (`max32_alloc_size`). */
  max32AllocSize: number;
  readonly tree = new IovaRbTree();
  readonly anchor: number;
  cachedNode: number;
  cached32Node: number;
  rcaches: IovaRcache[] | null = null;
  nrCpus = 0;
  readonly stats: IovaStats;
  readonly opts: IovaDomainOptions;
  readonly env: RcacheEnv;

  constructor(granule: number, startPfn: number, opts: IovaDomainOptions) {
    this.version = opts.version ?? 'newest';
    this.opts = opts;
    this.granule = granule;
    this.shift = Math.log2(granule);
    this.startPfn = startPfn;
    this.dma32bitPfn = 2 ** (32 - this.shift);
    this.max32AllocSize = this.dma32bitPfn;
    this.anchor = this.tree.insert(IOVA_ANCHOR, IOVA_ANCHOR);
    this.cachedNode = this.anchor;
    this.cached32Node = this.anchor;
    this.stats = {
      ...newRcacheStats(),
      treeAllocs: 0,
      treeAllocFailures: 0,
      max32FastFails: 0,
      rcacheFlushes: 0,
      rcacheBypass: 0,
    };
    const d = this;
    this.env = {
      version: this.version,
      get nrCpus() {
        return d.nrCpus;
      },
      freePfnToTree: (pfn) => freeCachedPfn(d, pfn),
      magazineAllocFails: () => opts.allocFails?.('magazine') ?? false,
      scheduler: opts.scheduler ?? null,
      stats: this.stats,
    };
  }
}

/**
 * `init_iova_domain()`: an empty domain of `granule`-sized pages whose allocations start at
 * `startPfn`. Precondition (BUG_ON in the kernel, a throw here): granule is a power of two
 * <= PAGE_SIZE; the model also needs granule >= 2 KiB (exact pfns).
 */
export function initIovaDomain(granule: Bytes, startPfn: number, opts: IovaDomainOptions = {}): IovaDomain {
  const g = Number(granule);
  if (g > PAGE_SIZE || g < 2048 || (g & (g - 1)) !== 0) throw new Error(`BUG: init_iova_domain granule ${g}`);
  if (!Number.isSafeInteger(startPfn) || startPfn < 0) throw new RangeError(`start_pfn ${startPfn}`);
  return new IovaDomain(g, startPfn, opts);
}

/**
 * `iova_domain_init_rcaches()`: the six range caches with `nrCpus` online CPUs.
 * @returns ok; ENOMEM when a magazine allocation fails (fault seam).
 */
export function iovaDomainInitRcaches(d: IovaDomain, nrCpus: number): KResult<void> {
  if (!Number.isInteger(nrCpus) || nrCpus < 1) throw new RangeError(`nrCpus ${nrCpus}`);
  if (d.opts.allocFails?.('magazine')) return err('ENOMEM', 'iova_domain_init_rcaches: magazine allocation');
  d.nrCpus = nrCpus;
  d.rcaches = initRcaches(nrCpus);
  return ok(undefined);
}

/** `iova_shift()`. */
export const iovaShift = (d: IovaDomain): number => d.shift;
/** `iova_offset()`: the offset of an address inside its granule. */
export const iovaOffset = (d: IovaDomain, addr: bigint): bigint => addr & BigInt(d.granule - 1);
/** `iova_align()`: a size rounded up to the granule. */
export const iovaAlign = (d: IovaDomain, size: bigint): Bytes =>
  bytes((size + BigInt(d.granule - 1)) & ~BigInt(d.granule - 1));
/** `iova_pfn()`: the pfn of an address. */
export const iovaPfn = (d: IovaDomain, addr: bigint): number => Number(addr >> BigInt(d.shift));
/** `iova_dma_addr()`: the DMA address of a pfn. */
export const iovaDmaAddr = (d: IovaDomain, pfn: number): DmaAddr => dmaAddr(BigInt(pfn) << BigInt(d.shift));
/** `iova_rcache_range()`: the largest size the caches hold (PAGE_SIZE << 5 = 128 KiB). */
export const iovaRcacheRange = (): Bytes => bytes(BigInt(PAGE_SIZE) << BigInt(IOVA_RANGE_CACHE_MAX_SIZE - 1));

const rangeOf = (d: IovaDomain, id: number): IovaRange => ({
  pfnLo: d.tree.pfnLo(id),
  pfnHi: d.tree.pfnHi(id),
});

function cachedInsertUpdate(d: IovaDomain, id: number): void {
  if (d.tree.pfnHi(id) < d.dma32bitPfn) d.cached32Node = id;
  else d.cachedNode = id;
}

function cachedDeleteUpdate(d: IovaDomain, free: number): void {
  const t = d.tree;
  const lo = t.pfnLo(free);
  const hi = t.pfnHi(free);
  if (free === d.cached32Node || (hi < d.dma32bitPfn && lo >= t.pfnLo(d.cached32Node)))
    d.cached32Node = t.next(free);
  if (lo < d.dma32bitPfn) d.max32AllocSize = d.dma32bitPfn;
  if (lo >= t.pfnLo(d.cachedNode)) d.cachedNode = t.next(free);
}

/** `remove_iova()` + `free_iova_mem()`. */
function removeIova(d: IovaDomain, id: number): void {
  if (id === d.anchor) throw new Error('BUG: freeing the IOVA anchor node');
  cachedDeleteUpdate(d, id);
  d.tree.remove(id);
}

/** `iova_find_limit()`: a node at or above `limitPfn` to restart the walk from (same result as the kernel's). */
function iovaFindLimit(d: IovaDomain, limitPfn: number): number {
  if (limitPfn > d.dma32bitPfn) return d.anchor;
  return d.tree.lowestEndingAtOrAbove(limitPfn);
}

/**
 * `__alloc_and_insert_iova_range()`: the top-down walk. `limitPfn` is exclusive here (callers pass
 * limit + 1). @returns the new node id, or NIL for -ENOMEM (max32_alloc_size recorded).
 */
function allocAndInsertIovaRange(
  d: IovaDomain,
  size: number,
  limitPfn: number,
  sizeAligned: boolean,
): number {
  const t = d.tree;
  // align_mask = ~0UL << fls_long(size - 1): the start aligned to roundup_pow_of_two(size) pages.
  const align = sizeAligned ? 2 ** orderBase2(size) : 1;
  if (limitPfn <= d.dma32bitPfn && size >= d.max32AllocSize) {
    d.stats.max32FastFails++;
    return NIL;
  }
  let curr = limitPfn <= d.dma32bitPfn ? d.cached32Node : d.cachedNode;
  const retryPfn = t.pfnHi(curr);
  let high = limitPfn;
  let low = d.startPfn;
  let newPfn: number;
  let retried = false;
  for (;;) {
    do {
      high = Math.min(high, t.pfnLo(curr));
      newPfn = Math.floor((high - size) / align) * align;
      curr = t.prev(curr);
    } while (curr !== NIL && newPfn <= t.pfnHi(curr) && newPfn >= low);
    if (high >= size && newPfn >= low) break;
    if (low === d.startPfn && retryPfn < limitPfn) {
      if (retried) throw new Error('BUG: __alloc_and_insert_iova_range would retry forever');
      retried = true;
      high = limitPfn;
      low = retryPfn + 1;
      curr = iovaFindLimit(d, limitPfn);
      continue;
    }
    d.max32AllocSize = size;
    return NIL;
  }
  const id = t.insert(newPfn, newPfn + size - 1);
  cachedInsertUpdate(d, id);
  return id;
}

/**
 * `alloc_iova()`: `size` pages at the highest free place ending at or below `limitPfn`; with
 * `sizeAligned` the start is aligned to roundup_pow_of_two(size) pages.
 * @returns the range; ENOMEM when no place fits (or `alloc_iova_mem()` fails, fault seam).
 */
export function allocIova(
  d: IovaDomain,
  size: number,
  limitPfn: number,
  sizeAligned: boolean,
): KResult<IovaRange> {
  if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`alloc_iova size ${size}`);
  if (!Number.isSafeInteger(limitPfn) || limitPfn < 0)
    throw new RangeError(`alloc_iova limit_pfn ${limitPfn}`);
  if (d.opts.allocFails?.('iova')) return err('ENOMEM', 'alloc_iova_mem failed');
  const id = allocAndInsertIovaRange(d, size, limitPfn + 1, sizeAligned);
  if (id === NIL) {
    d.stats.treeAllocFailures++;
    return err('ENOMEM', `no ${size}-page IOVA range at or below pfn ${limitPfn}`);
  }
  d.stats.treeAllocs++;
  return ok(rangeOf(d, id));
}

/** `find_iova()`: the range containing `pfn`, or null. */
export function findIova(d: IovaDomain, pfn: number): IovaRange | null {
  const id = d.tree.find(pfn);
  return id === NIL || id === d.anchor ? null : rangeOf(d, id);
}

/** `free_iova()`: free the range containing `pfn` (nothing happens if there is none, as in the kernel). */
export function freeIova(d: IovaDomain, pfn: number): void {
  const id = d.tree.find(pfn);
  if (id !== NIL && id !== d.anchor) removeIova(d, id);
}

/** A cached pfn going back to the tree; a missing range is a double free (kernel WARN_ON): throws. */
function freeCachedPfn(d: IovaDomain, pfn: number): void {
  const id = d.tree.find(pfn);
  if (id === NIL || id === d.anchor) throw new Error(`BUG: cached IOVA pfn ${pfn} is not in the tree`);
  removeIova(d, id);
}

/**
 * `reserve_iova()`: keep `[pfnLo, pfnHi]` out of allocation. Overlapping ranges are extended in
 * place (`__adjust_overlap_range()`), and what is left is inserted as a new range.
 * @returns the range that now covers the end of the request; EINVAL for pfns beyond the 64-bit
 *   space (the kernel WARNs and returns NULL); ENOMEM when the node allocation fails (fault seam).
 */
export function reserveIova(d: IovaDomain, pfnLoIn: number, pfnHi: number): KResult<IovaRange> {
  if (pfnLoIn > pfnHi || pfnLoIn < 0) throw new RangeError(`reserve_iova [${pfnLoIn}, ${pfnHi}]`);
  if (pfnHi >= 2 ** (64 - d.shift)) return err('EINVAL', `nonsensical pfn ${pfnHi}`);
  const t = d.tree;
  let pfnLo = pfnLoIn;
  let overlap = false;
  for (let id = t.first(); id !== NIL; id = t.next(id)) {
    if (pfnLo <= t.pfnHi(id) && pfnHi >= t.pfnLo(id)) {
      if (pfnLo < t.pfnLo(id)) t.setRange(id, pfnLo, t.pfnHi(id));
      if (pfnHi > t.pfnHi(id)) pfnLo = t.pfnHi(id) + 1;
      if (pfnLo >= t.pfnLo(id) && pfnHi <= t.pfnHi(id)) return ok(rangeOf(d, id));
      overlap = true;
    } else if (overlap) break;
  }
  if (d.opts.allocFails?.('iova')) return err('ENOMEM', 'alloc_iova_mem failed');
  return ok(rangeOf(d, t.insert(pfnLo, pfnHi)));
}

function requireRcaches(d: IovaDomain): IovaRcache[] {
  if (d.rcaches === null) throw new Error('BUG: IOVA rcaches used before iova_domain_init_rcaches()');
  return d.rcaches;
}

/**
 * `alloc_iova_fast()`: sizes below 32 pages are rounded up to a power of two; try `cpu`'s range
 * cache, else the tree (size-aligned); on failure with `flushRcache`, free every online CPU's
 * cached ranges and the depots, and retry once.
 * @returns the first pfn; ENOMEM when the space below `limitPfn` is exhausted.
 */
export function allocIovaFast(
  d: IovaDomain,
  sizeIn: number,
  limitPfn: number,
  flushRcache: boolean,
  cpu: number,
): KResult<number> {
  const rcaches = requireRcaches(d);
  const size = sizeIn < 2 ** (IOVA_RANGE_CACHE_MAX_SIZE - 1) ? 2 ** orderBase2(sizeIn) : sizeIn;
  const bucket = orderBase2(size);
  if (bucket < IOVA_RANGE_CACHE_MAX_SIZE) {
    const pfn = rcacheGet(rcaches, bucket, cpu, limitPfn + 1 - size);
    if (pfn !== 0) {
      d.stats.hits[bucket]!++;
      return ok(pfn);
    }
    d.stats.misses[bucket]!++;
  } else d.stats.rcacheBypass++;
  let flush = flushRcache;
  for (;;) {
    const r = allocIova(d, size, limitPfn, true);
    if (r.ok) return ok(r.value.pfnLo);
    if (!flush) return r;
    flush = false;
    d.stats.rcacheFlushes++;
    for (let c = 0; c < d.nrCpus; c++) rcFreeCpu(rcaches, c, d.env);
    rcFreeGlobal(rcaches, d.env);
  }
}

/**
 * `free_iova_fast()`: put the range starting at `pfn` (of the unrounded `size` the caller
 * allocated) into `cpu`'s cache, or free it to the tree when it is too large or cannot be cached.
 */
export function freeIovaFast(d: IovaDomain, pfn: number, size: number, cpu: number): void {
  const rcaches = requireRcaches(d);
  const bucket = orderBase2(size);
  if (bucket < IOVA_RANGE_CACHE_MAX_SIZE && rcacheInsert(rcaches, bucket, cpu, pfn, d.env)) return;
  freeIova(d, pfn);
}

/** `free_cpu_cached_iovas()`; also what CPU hot-unplug (`iova_cpuhp_dead()`) does. */
export function freeCpuCachedIovas(d: IovaDomain, cpu: number): void {
  rcFreeCpu(requireRcaches(d), cpu, d.env);
}

/** `free_global_cached_iovas()`. */
export function freeGlobalCachedIovas(d: IovaDomain): void {
  rcFreeGlobal(requireRcaches(d), d.env);
}

/**
 * Run each pending 6.7+ depot work item once, as if IOVA_DEPOT_DELAY had passed (for domains
 * without a scheduler). @returns how many work items ran.
 */
export function iovaDepotReclaimTick(d: IovaDomain): number {
  if (d.env.scheduler !== null) throw new Error('iovaDepotReclaimTick on a domain with a scheduler');
  const rcaches = requireRcaches(d);
  let ran = 0;
  rcaches.forEach((rc, bucket) => {
    if (!rc.workPending) return;
    iovaDepotWorkFunc(rcaches, bucket, d.env);
    ran++;
  });
  return ran;
}

/** `put_iova_domain()`: drop the caches and every range. */
export function putIovaDomain(d: IovaDomain): void {
  d.rcaches = null;
  for (let id = d.tree.first(); id !== NIL; ) {
    const next = d.tree.next(id);
    if (id !== d.anchor) d.tree.remove(id);
    id = next;
  }
  d.cachedNode = d.anchor;
  d.cached32Node = d.anchor;
}

/** Every allocated or reserved range in pfn order, without the anchor (checkers, tests, reports). */
export function iovaDomainRanges(d: IovaDomain): IovaRange[] {
  const out: IovaRange[] = [];
  for (let id = d.tree.first(); id !== NIL; id = d.tree.next(id))
    if (id !== d.anchor) out.push(rangeOf(d, id));
  return out;
}
