// The IOVA range caches of drivers/iommu/iova.c: per-CPU magazines of freed pfns in six size
// buckets (1, 2, 4, 8, 16, 32 pages), with a global depot of full magazines per bucket.
//
//   free_iova_fast(pfn)                        alloc_iova_fast()
//        |                                          ^
//        v                                          |
//   cpu[c].loaded  --full--> swap with prev --full--> new magazine; old loaded -> depot
//   cpu[c].loaded  <-empty-- swap with prev <-empty-- depot pop (empty loaded freed)
//
// The depot differs by profile. 6.1: an array of MAX_GLOBAL_MAGS (32) per bucket; when it is full
// the displaced magazine's pfns go straight back to the tree. 6.7+: an unbounded LIFO list with a
// delayed work item (IOVA_DEPOT_DELAY, 100 ms) that frees one magazine per run while the depot holds
// more magazines than there are online CPUs, re-arming itself after each magazine it frees.
// The tree side (freeing a pfn back to the rbtree) is a callback, so this file knows no tree.

import type { KernelVersion } from '../profile.js';

/** log2 of the largest cached range in pages, plus one: buckets for 1..32 pages. */
export const IOVA_RANGE_CACHE_MAX_SIZE = 6;
/** pfns per magazine (127 + a size/next word = 1024 bytes). */
export const IOVA_MAG_SIZE = 127;
/** 6.1: full magazines per bucket in the depot array. */
export const MAX_GLOBAL_MAGS = 32;
/** 6.7+: delay of the depot reclaim work (`msecs_to_jiffies(100)`), in ns. */
export const IOVA_DEPOT_DELAY_NS = 100_000_000;

/** `struct iova_magazine`. */
export interface IovaMagazine {
  size: number;
  readonly pfns: Float64Array;
}

/** `struct iova_cpu_rcache`. */
export interface IovaCpuRcache {
  loaded: IovaMagazine;
  prev: IovaMagazine;
}

/** `struct iova_rcache`: one size bucket. */
export interface IovaRcache {
  /** Full magazines, the top of the stack last (6.1 array or 6.7+ list: both LIFO). */
  readonly depot: IovaMagazine[];
  readonly cpu: IovaCpuRcache[];
  /** 6.7+: the delayed reclaim work is queued (`schedule_delayed_work()` on a pending work is a no-op). */
  workPending: boolean;
}

/** Something that runs a callback after a virtual delay (the sim Engine fits). */
export interface DelayScheduler {
  schedule(delayNs: number, fn: () => void): unknown;
}

/** The environment the rcache code needs from its domain. */
export interface RcacheEnv {
  readonly version: KernelVersion;
  readonly nrCpus: number;
  /** Return a cached pfn to the tree (`iova_magazine_free_pfns()` per pfn). */
  freePfnToTree(pfn: number): void;
  /** Fault seam for `iova_magazine_alloc(GFP_ATOMIC)`: true = allocation fails. */
  magazineAllocFails(): boolean;
  /** Queue the 6.7+ depot work for `bucket` after IOVA_DEPOT_DELAY (null: only manual ticks). */
  readonly scheduler: DelayScheduler | null;
  readonly stats: RcacheStats;
}

export interface RcacheStats {
  /** Allocations served from a magazine, per bucket. */
  readonly hits: number[];
  /** Cacheable allocations that fell back to the tree, per bucket. */
  readonly misses: number[];
  /** Magazines pushed to a depot. */
  depotPushes: number;
  /** 6.1: full magazines displaced from a full depot and freed to the tree. */
  depotOverflows: number;
  /** 6.7+: magazines freed by the delayed depot work. */
  depotReclaims: number;
}

export const newRcacheStats = (): RcacheStats => ({
  hits: new Array(IOVA_RANGE_CACHE_MAX_SIZE).fill(0),
  misses: new Array(IOVA_RANGE_CACHE_MAX_SIZE).fill(0),
  depotPushes: 0,
  depotOverflows: 0,
  depotReclaims: 0,
});

const newMagazine = (): IovaMagazine => ({ size: 0, pfns: new Float64Array(IOVA_MAG_SIZE) });

/** `order_base_2(size)`: ceil(log2(size)) for size >= 1. */
export function orderBase2(size: number): number {
  let o = 0;
  while (2 ** o < size) o++;
  return o;
}

/** `iova_domain_init_rcaches()`: six buckets, each CPU with an empty loaded and prev magazine. */
export function initRcaches(nrCpus: number): IovaRcache[] {
  const out: IovaRcache[] = [];
  for (let i = 0; i < IOVA_RANGE_CACHE_MAX_SIZE; i++) {
    const cpu: IovaCpuRcache[] = [];
    for (let c = 0; c < nrCpus; c++) cpu.push({ loaded: newMagazine(), prev: newMagazine() });
    out.push({ depot: [], cpu, workPending: false });
  }
  return out;
}

function magazineFreePfns(mag: IovaMagazine, env: RcacheEnv): void {
  for (let i = 0; i < mag.size; i++) env.freePfnToTree(mag.pfns[i]!);
  mag.size = 0;
}

/** `iova_magazine_pop()`: the topmost pfn <= limitPfn, swapped out; 0 when none fits. */
function magazinePop(mag: IovaMagazine, limitPfn: number): number {
  let i = mag.size - 1;
  while (mag.pfns[i]! > limitPfn) {
    if (i === 0) return 0;
    i--;
  }
  const pfn = mag.pfns[i]!;
  mag.size--;
  mag.pfns[i] = mag.pfns[mag.size]!;
  return pfn;
}

function cpuRcache(rc: IovaRcache, cpu: number): IovaCpuRcache {
  const c = rc.cpu[cpu];
  if (c === undefined) throw new RangeError(`CPU ${cpu} is not online`);
  return c;
}

/**
 * `__iova_rcache_insert()`: cache `pfn` in `cpu`'s magazines of bucket `rc`.
 * @returns false when it could not be cached (a new magazine could not be allocated); the caller
 *   then frees the range to the tree.
 */
export function rcacheInsert(
  rcaches: IovaRcache[],
  bucket: number,
  cpu: number,
  pfn: number,
  env: RcacheEnv,
): boolean {
  const rc = rcaches[bucket]!;
  const c = cpuRcache(rc, cpu);
  let displaced: IovaMagazine | null = null;
  if (c.loaded.size === IOVA_MAG_SIZE) {
    if (c.prev.size < IOVA_MAG_SIZE) {
      [c.prev, c.loaded] = [c.loaded, c.prev];
    } else {
      if (env.magazineAllocFails()) return false;
      if (env.version === '6.1' && rc.depot.length >= MAX_GLOBAL_MAGS) {
        displaced = c.loaded;
        env.stats.depotOverflows++;
      } else {
        rc.depot.push(c.loaded);
        env.stats.depotPushes++;
        if (env.version !== '6.1') scheduleDepotWork(rcaches, bucket, env);
      }
      c.loaded = newMagazine();
    }
  }
  c.loaded.pfns[c.loaded.size++] = pfn;
  if (displaced !== null) magazineFreePfns(displaced, env);
  return true;
}

/**
 * `__iova_rcache_get()`: a cached pfn <= limitPfn from `cpu`'s magazines (or a depot magazine).
 * @returns the pfn, or 0 for a miss.
 */
export function rcacheGet(rcaches: IovaRcache[], bucket: number, cpu: number, limitPfn: number): number {
  const rc = rcaches[bucket]!;
  const c = cpuRcache(rc, cpu);
  let hasPfn = false;
  if (c.loaded.size > 0) hasPfn = true;
  else if (c.prev.size > 0) {
    [c.prev, c.loaded] = [c.loaded, c.prev];
    hasPfn = true;
  } else if (rc.depot.length > 0) {
    // The empty loaded magazine is freed; a depot magazine is always full.
    c.loaded = rc.depot.pop()!;
    hasPfn = true;
  }
  return hasPfn ? magazinePop(c.loaded, limitPfn) : 0;
}

function scheduleDepotWork(rcaches: IovaRcache[], bucket: number, env: RcacheEnv): void {
  const rc = rcaches[bucket]!;
  if (rc.workPending) return;
  rc.workPending = true;
  env.scheduler?.schedule(IOVA_DEPOT_DELAY_NS, () => iovaDepotWorkFunc(rcaches, bucket, env));
}

/**
 * `iova_depot_work_func()` (6.7+): free one depot magazine to the tree when the depot holds more
 * magazines than online CPUs, and re-arm. Runs from the scheduler, or from a manual tick.
 */
export function iovaDepotWorkFunc(rcaches: IovaRcache[], bucket: number, env: RcacheEnv): void {
  const rc = rcaches[bucket]!;
  rc.workPending = false;
  if (rc.depot.length <= env.nrCpus) return;
  const mag = rc.depot.pop()!;
  magazineFreePfns(mag, env);
  env.stats.depotReclaims++;
  scheduleDepotWork(rcaches, bucket, env);
}

/** `free_cpu_cached_iovas()`: return every pfn in `cpu`'s magazines to the tree. */
export function freeCpuCachedIovas(rcaches: IovaRcache[], cpu: number, env: RcacheEnv): void {
  for (const rc of rcaches) {
    const c = cpuRcache(rc, cpu);
    magazineFreePfns(c.loaded, env);
    magazineFreePfns(c.prev, env);
  }
}

/**
 * `free_global_cached_iovas()`: return every depot magazine's pfns to the tree — 6.1 walks its
 * array from the oldest magazine, 6.7+ pops its list from the newest (the order decides where the
 * tree's cached nodes end up).
 */
export function freeGlobalCachedIovas(rcaches: IovaRcache[], env: RcacheEnv): void {
  for (const rc of rcaches) {
    if (env.version === '6.1') {
      for (const mag of rc.depot) magazineFreePfns(mag, env);
      rc.depot.length = 0;
    } else {
      while (rc.depot.length > 0) magazineFreePfns(rc.depot.pop()!, env);
    }
  }
}

/** pfns held by all magazines and depots (tests and reports). */
export function rcacheCachedCount(rcaches: IovaRcache[]): number {
  let n = 0;
  for (const rc of rcaches) {
    for (const c of rc.cpu) n += c.loaded.size + c.prev.size;
    for (const m of rc.depot) n += m.size;
  }
  return n;
}
