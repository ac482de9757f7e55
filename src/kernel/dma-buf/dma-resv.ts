// dma_resv: the reservation object every buffer carries — a ww-mutex plus one list of fences, each tagged
// with how it uses the buffer (drivers/dma-buf/dma-resv.c, include/linux/dma-resv.h).
//
// Usage classes are ordered KERNEL < WRITE < READ < BOOKKEEP, and a query for usage U sees every fence at
// or below U. Writers must first reserve slots (dma_resv_reserve_fences), then add fences; both need the
// lock. Readers without the lock use the RCU iterator in dma-resv-iter.ts, which restarts when the list is
// replaced. Calling a locked-only function without holding the lock is reported the way lockdep does.

import { type KResult, ok } from '../errno.js';
import {
  type DmaFence,
  dmaFenceGet,
  dmaFenceIsLaterOrSame,
  dmaFenceIsSignaled,
  dmaFencePut,
} from './dma-fence.js';
import { dmaFenceIsContainer } from './dma-fence-array.js';
import type { KTaskOp } from './sched.js';
import { type DmaBufWorld, warn, warnOn } from './world.js';
import {
  type WwAcquireCtx,
  type WwMutex,
  wwMutexHeldByCurrent,
  wwMutexInit,
  wwMutexIsLocked,
  wwMutexLock,
  wwMutexLockInterruptible,
  wwMutexLockSlow,
  wwMutexLockSlowInterruptible,
  wwMutexTrylock,
  wwMutexUnlock,
} from './ww-mutex.js';

/** `enum dma_resv_usage`, lowest (strictest) first. */
export type DmaResvUsage = 'kernel' | 'write' | 'read' | 'bookkeep';

/** The kernel's numbers: DMA_RESV_USAGE_KERNEL 0, WRITE 1, READ 2, BOOKKEEP 3. */
export const DMA_RESV_USAGE_VALUE: Readonly<Record<DmaResvUsage, number>> = {
  kernel: 0,
  write: 1,
  read: 2,
  bookkeep: 3,
};

export const DMA_RESV_USAGES: readonly DmaResvUsage[] = ['kernel', 'write', 'read', 'bookkeep'];

/** Does a query for `query` see a fence added with `usage` (usage at or below the query)? */
export const dmaResvUsageIncludes = (query: DmaResvUsage, usage: DmaResvUsage): boolean =>
  DMA_RESV_USAGE_VALUE[usage] <= DMA_RESV_USAGE_VALUE[query];

/**
 * dma_resv_usage_rw(write): what implicit sync must wait for. A writer waits for readers and writers
 * (READ); a reader only for writers (WRITE).
 */
export const dmaResvUsageRw = (write: boolean): DmaResvUsage => (write ? 'read' : 'write');

/** One slot: the kernel packs the usage into the low two bits of the fence pointer (DMA_RESV_LIST_MASK). */
export interface DmaResvEntry {
  readonly fence: DmaFence;
  readonly usage: DmaResvUsage;
}

/** `struct dma_resv_list`: replaced, never resized, so lockless readers keep a consistent copy. */
export interface DmaResvList {
  numFences: number;
  maxFences: number;
  readonly table: DmaResvEntry[];
}

/** `struct dma_resv`. */
export interface DmaResv {
  readonly world: DmaBufWorld;
  readonly lock: WwMutex;
  fences: DmaResvList | null;
}

/** offsetof(struct dma_resv_list, table) on 64-bit: rcu_head (16) + two u32 (8). */
const LIST_HEADER_BYTES = 24;
const KMALLOC_SIZES = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192];
const PAGE_SIZE = 4096;

/** kmalloc_size_roundup(): the size of the slab object (or page block) kmalloc() really returns. */
export function kmallocSizeRoundup(size: number): number {
  const bucket = KMALLOC_SIZES.find((s) => s >= size);
  if (bucket !== undefined) return bucket;
  let block = PAGE_SIZE;
  while (block < size) block *= 2;
  return block;
}

/** dma_resv_list_alloc(): capacity rounds up to what the kmalloc bucket holds. */
function listAlloc(maxFences: number): DmaResvList {
  const size = kmallocSizeRoundup(LIST_HEADER_BYTES + 8 * maxFences);
  return { numFences: 0, maxFences: Math.floor((size - LIST_HEADER_BYTES) / 8), table: [] };
}

/** dma_resv_list_free(): drop the list's fence references. */
export function dmaResvListFree(list: DmaResvList | null): void {
  if (!list) return;
  for (let i = 0; i < list.numFences; i++) dmaFencePut(list.table[i]!.fence);
}

/** dma_resv_init(): an empty, unlocked reservation object. */
export function dmaResvInit(world: DmaBufWorld): DmaResv {
  return { world, lock: wwMutexInit(world, world.reservationWwClass, 'reservation'), fences: null };
}

/** dma_resv_fini(): drop every fence. */
export function dmaResvFini(obj: DmaResv): void {
  dmaResvListFree(obj.fences);
  obj.fences = null;
}

/** dma_resv_held(): does the current thread hold the lock (lockdep_is_held)? */
export const dmaResvHeld = (obj: DmaResv): boolean => wwMutexHeldByCurrent(obj.lock);

/** dma_resv_assert_held(): lockdep_assert_held(&obj->lock.base), reported as a warning of `func`. */
export function dmaResvAssertHeld(obj: DmaResv, func: string): boolean {
  if (dmaResvHeld(obj)) return true;
  warn(obj.world, func, 'WARN_ON(debug_locks && !lockdep_is_held(&obj->lock.base))');
  return false;
}

/**
 * dma_resv_lock(): lock the object, alone (ctx null) or within a ww transaction.
 * @returns ok; EALREADY when `ctx` holds it already; EDEADLK when `ctx` must back off (unlock all, then
 *   dmaResvLockSlow). May sleep.
 */
export const dmaResvLock = (obj: DmaResv, ctx: WwAcquireCtx | null): KTaskOp<KResult<undefined>> =>
  wwMutexLock(obj.lock, ctx);

/** dma_resv_lock_interruptible(): as dmaResvLock, plus EINTR on a signal. */
export const dmaResvLockInterruptible = (
  obj: DmaResv,
  ctx: WwAcquireCtx | null,
): KTaskOp<KResult<undefined>> => wwMutexLockInterruptible(obj.lock, ctx);

/** dma_resv_lock_slow(): the contended lock after an EDEADLK back-off. */
export const dmaResvLockSlow = (obj: DmaResv, ctx: WwAcquireCtx): KTaskOp<void> =>
  wwMutexLockSlow(obj.lock, ctx);

/** dma_resv_lock_slow_interruptible(). @returns ok or EINTR. */
export const dmaResvLockSlowInterruptible = (obj: DmaResv, ctx: WwAcquireCtx): KTaskOp<KResult<undefined>> =>
  wwMutexLockSlowInterruptible(obj.lock, ctx);

/** dma_resv_trylock(): take the lock without a context if it is free. */
export const dmaResvTrylock = (obj: DmaResv): boolean => wwMutexTrylock(obj.lock, null);

/** dma_resv_is_locked(). */
export const dmaResvIsLocked = (obj: DmaResv): boolean => wwMutexIsLocked(obj.lock);

/** dma_resv_locking_ctx(): the transaction holding the lock, if any. */
export const dmaResvLockingCtx = (obj: DmaResv): WwAcquireCtx | null => obj.lock.ctx;

/** dma_resv_reset_max_fences() (CONFIG_DEBUG_MUTEXES): forget unused reservations, to catch missing ones. */
export function dmaResvResetMaxFences(obj: DmaResv): void {
  dmaResvAssertHeld(obj, 'dma_resv_reset_max_fences');
  if (obj.fences) obj.fences.maxFences = obj.fences.numFences;
}

/** dma_resv_unlock(): with CONFIG_DEBUG_MUTEXES, unused slot reservations do not survive the unlock. */
export function dmaResvUnlock(obj: DmaResv): void {
  if (obj.world.debugMutexes) dmaResvResetMaxFences(obj);
  wwMutexUnlock(obj.lock);
}

/**
 * dma_resv_reserve_fences(): make room for `numFences` more dma_resv_add_fence() calls. Lock held.
 * Growth: enough room already → nothing; else a new list of max(num + n, 2 * max) slots (first list:
 * max(4, roundup_pow_of_two(n))), rounded up to the kmalloc bucket; signaled fences are dropped on copy.
 * @returns ok (the kernel's ENOMEM is not modelled).
 */
export function dmaResvReserveFences(obj: DmaResv, numFences: number): KResult<undefined> {
  dmaResvAssertHeld(obj, 'dma_resv_reserve_fences');
  const old = obj.fences;
  let max: number;
  if (old && old.maxFences > 0) {
    if (old.numFences + numFences <= old.maxFences) return ok(undefined);
    max = Math.max(old.numFences + numFences, old.maxFences * 2);
  } else {
    max = Math.max(4, roundupPowOfTwo(numFences));
  }
  const list = listAlloc(max);
  const dropped: DmaFence[] = [];
  for (let i = 0; i < (old?.numFences ?? 0); i++) {
    const e = old!.table[i]!;
    if (dmaFenceIsSignaled(e.fence)) dropped.push(e.fence);
    else list.table[list.numFences++] = e;
  }
  obj.fences = list;
  for (const f of dropped) dmaFencePut(f);
  return ok(undefined);
}

function roundupPowOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * dma_resv_add_fence(): add `fence` (taking a reference) with `usage`. Lock held, slot reserved. A slot is
 * reused when its fence has signaled, or is on the same context with usage at or above `usage` and the new
 * fence is later or the same. WARNs for containers; running out of reserved slots is a BUG (throws).
 */
export function dmaResvAddFence(obj: DmaResv, fence: DmaFence, usage: DmaResvUsage): void {
  dmaFenceGet(fence);
  dmaResvAssertHeld(obj, 'dma_resv_add_fence');
  warnOn(obj.world, dmaFenceIsContainer(fence), 'dma_resv_add_fence', 'dma_fence_is_container(fence)');
  const list = obj.fences;
  if (!list) throw new Error('dma_resv_add_fence: no fence slot reserved (NULL list dereference)');
  for (let i = 0; i < list.numFences; i++) {
    const old = list.table[i]!;
    const sameTimeline =
      old.fence.context === fence.context &&
      DMA_RESV_USAGE_VALUE[old.usage] >= DMA_RESV_USAGE_VALUE[usage] &&
      dmaFenceIsLaterOrSame(fence, old.fence);
    if (sameTimeline || dmaFenceIsSignaled(old.fence)) {
      list.table[i] = { fence, usage };
      dmaFencePut(old.fence);
      return;
    }
  }
  if (list.numFences >= list.maxFences) {
    throw new Error(
      'kernel BUG in dma_resv_add_fence: fobj->num_fences >= fobj->max_fences (no slot reserved)',
    );
  }
  list.table[list.numFences++] = { fence, usage };
}

/** dma_resv_replace_fences(): put `replacement` with `usage` in place of every fence of `context`. Lock held. */
export function dmaResvReplaceFences(
  obj: DmaResv,
  context: bigint,
  replacement: DmaFence,
  usage: DmaResvUsage,
): void {
  dmaResvAssertHeld(obj, 'dma_resv_replace_fences');
  const list = obj.fences;
  for (let i = 0; list && i < list.numFences; i++) {
    const old = list.table[i]!;
    if (old.fence.context !== context) continue;
    list.table[i] = { fence: dmaFenceGet(replacement), usage };
    dmaFencePut(old.fence);
  }
}
