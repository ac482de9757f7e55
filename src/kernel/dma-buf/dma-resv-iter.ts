// Walking the fences of a dma_resv, with the lock (dma_resv_iter_first/next) or without it
// (dma_resv_iter_first_unlocked/next_unlocked), and the queries built on the lockless walk:
// get_fences, get_singleton, copy_fences, wait_timeout, set_deadline, test_signaled
// (drivers/dma-buf/dma-resv.c, include/linux/dma-resv.h).
//
// The lockless walk snapshots the current list and takes a reference on each unsignaled fence it returns.
// If the object's list has been replaced meanwhile (a reserve, a copy) it starts over and flags the
// restart, so callers collecting fences throw away what they had. Since Linux 5.19 the restart test is
// "is this still the object's list"; the sequence counter the reference digest mentions was dropped then.

import { type KResult, ok } from '../errno.js';
import {
  type DmaFence,
  dmaFenceContextAlloc,
  dmaFenceGet,
  dmaFenceGetRcu,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceSetDeadline,
} from './dma-fence.js';
import { dmaFenceArrayCreate } from './dma-fence-array.js';
import { dmaFenceWaitTimeout } from './dma-fence-wait.js';
import {
  type DmaResv,
  type DmaResvList,
  type DmaResvUsage,
  dmaResvAssertHeld,
  dmaResvListFree,
  dmaResvUsageIncludes,
} from './dma-resv.js';
import type { KTaskOp } from './sched.js';

/** `struct dma_resv_iter`. */
export interface DmaResvIter {
  readonly obj: DmaResv;
  /** Fences with usage at or below this are returned. */
  readonly usage: DmaResvUsage;
  /** The current fence (the lockless walk holds a reference to it). */
  fence: DmaFence | null;
  fenceUsage: DmaResvUsage;
  index: number;
  /** The list being walked; a different list on the object means "restart". */
  fences: DmaResvList | null;
  numFences: number;
  isRestarted: boolean;
}

/** dma_resv_iter_begin(). */
export const dmaResvIterBegin = (obj: DmaResv, usage: DmaResvUsage): DmaResvIter => ({
  obj,
  usage,
  fence: null,
  fenceUsage: 'kernel',
  index: 0,
  fences: null,
  numFences: 0,
  isRestarted: false,
});

/** dma_resv_iter_end(): drop the reference of the lockless walk. */
export function dmaResvIterEnd(cursor: DmaResvIter): void {
  dmaFencePut(cursor.fence);
}

/** dma_resv_iter_usage(): the usage of the current fence. */
export const dmaResvIterUsage = (cursor: DmaResvIter): DmaResvUsage => cursor.fenceUsage;

/** dma_resv_iter_is_restarted(): this is the first fence of a (re)started walk. */
export const dmaResvIterIsRestarted = (cursor: DmaResvIter): boolean => cursor.isRestarted;

function restartUnlocked(cursor: DmaResvIter): void {
  cursor.index = 0;
  cursor.fences = cursor.obj.fences;
  cursor.numFences = cursor.fences?.numFences ?? 0;
  cursor.isRestarted = true;
}

function walkUnlocked(cursor: DmaResvIter): void {
  if (!cursor.fences) return;
  for (;;) {
    dmaFencePut(cursor.fence);
    if (cursor.index >= cursor.numFences) {
      cursor.fence = null;
      return;
    }
    const e = cursor.fences.table[cursor.index++]!;
    cursor.fenceUsage = e.usage;
    cursor.fence = dmaFenceGetRcu(e.fence);
    if (!cursor.fence) {
      restartUnlocked(cursor); // the fence is being freed: the list must have changed
      continue;
    }
    if (!dmaFenceIsSignaled(cursor.fence) && dmaResvUsageIncludes(cursor.usage, cursor.fenceUsage)) return;
  }
}

/** dma_resv_iter_first_unlocked(): the first unsignaled fence (a reference held by the cursor), or null. */
export function dmaResvIterFirstUnlocked(cursor: DmaResvIter): DmaFence | null {
  do {
    restartUnlocked(cursor);
    walkUnlocked(cursor);
  } while (cursor.obj.fences !== cursor.fences);
  return cursor.fence;
}

/** dma_resv_iter_next_unlocked(): the next one; restarts from the top if the list was replaced. */
export function dmaResvIterNextUnlocked(cursor: DmaResvIter): DmaFence | null {
  cursor.isRestarted = false;
  let restart = cursor.obj.fences !== cursor.fences;
  do {
    if (restart) restartUnlocked(cursor);
    walkUnlocked(cursor);
    restart = true;
  } while (cursor.obj.fences !== cursor.fences);
  return cursor.fence;
}

/** dma_resv_for_each_fence_unlocked(): every unsignaled fence at or below the cursor's usage. */
export function* dmaResvForEachFenceUnlocked(cursor: DmaResvIter): Generator<DmaFence, void, undefined> {
  for (let f = dmaResvIterFirstUnlocked(cursor); f !== null; f = dmaResvIterNextUnlocked(cursor)) yield f;
}

/** dma_resv_iter_first(): lock held; signaled fences included, no references taken. */
export function dmaResvIterFirst(cursor: DmaResvIter): DmaFence | null {
  dmaResvAssertHeld(cursor.obj, 'dma_resv_iter_first');
  cursor.index = 0;
  cursor.fences = cursor.obj.fences;
  const fence = dmaResvIterNext(cursor);
  cursor.isRestarted = true;
  return fence;
}

/** dma_resv_iter_next(): lock held. */
export function dmaResvIterNext(cursor: DmaResvIter): DmaFence | null {
  dmaResvAssertHeld(cursor.obj, 'dma_resv_iter_next');
  cursor.isRestarted = false;
  for (;;) {
    if (!cursor.fences || cursor.index >= cursor.fences.numFences) return null;
    const e = cursor.fences.table[cursor.index++]!;
    cursor.fenceUsage = e.usage;
    if (dmaResvUsageIncludes(cursor.usage, e.usage)) return e.fence;
  }
}

/** dma_resv_for_each_fence(): the locked walk. */
export function* dmaResvForEachFence(cursor: DmaResvIter): Generator<DmaFence, void, undefined> {
  for (let f = dmaResvIterFirst(cursor); f !== null; f = dmaResvIterNext(cursor)) yield f;
}

/**
 * dma_resv_get_fences(): references to every unsignaled fence at or below `usage`, without the lock.
 * @returns the fences (the kernel's ENOMEM is not modelled).
 */
export function dmaResvGetFences(obj: DmaResv, usage: DmaResvUsage): KResult<DmaFence[]> {
  let fences: DmaFence[] = [];
  const cursor = dmaResvIterBegin(obj, usage);
  for (const fence of dmaResvForEachFenceUnlocked(cursor)) {
    if (dmaResvIterIsRestarted(cursor)) {
      for (const f of fences) dmaFencePut(f);
      fences = [];
    }
    fences.push(dmaFenceGet(fence));
  }
  dmaResvIterEnd(cursor);
  return ok(fences);
}

/**
 * dma_resv_get_singleton(): one fence for all fences at or below `usage`.
 * @returns null (none), the single fence, or a new dma_fence_array over them (fresh context, seqno 1).
 */
export function dmaResvGetSingleton(obj: DmaResv, usage: DmaResvUsage): KResult<DmaFence | null> {
  const r = dmaResvGetFences(obj, usage);
  if (!r.ok) return r;
  const fences = r.value;
  if (fences.length === 0) return ok(null);
  if (fences.length === 1) return ok(fences[0]!);
  const world = obj.world;
  return ok(dmaFenceArrayCreate(world, fences, dmaFenceContextAlloc(world, 1), 1n, false));
}

/**
 * dma_resv_copy_fences(): replace `dst`'s fences (lock held) by `src`'s unsignaled fences of every usage.
 * @returns ok (ENOMEM is not modelled).
 */
export function dmaResvCopyFences(dst: DmaResv, src: DmaResv): KResult<undefined> {
  dmaResvAssertHeld(dst, 'dma_resv_copy_fences');
  let list: DmaResvList | null = null;
  const cursor = dmaResvIterBegin(src, 'bookkeep');
  for (const f of dmaResvForEachFenceUnlocked(cursor)) {
    if (dmaResvIterIsRestarted(cursor)) {
      dmaResvListFree(list);
      list = { numFences: 0, maxFences: cursor.numFences, table: [] };
    }
    list!.table[list!.numFences++] = { fence: dmaFenceGet(f), usage: dmaResvIterUsage(cursor) };
  }
  dmaResvIterEnd(cursor);
  const old = dst.fences;
  dst.fences = list;
  dmaResvListFree(old);
  return ok(undefined);
}

/**
 * dma_resv_wait_timeout(): wait, without the lock, for every fence at or below `usage`.
 * @returns ok(time left) (1 for a zero timeout when all are signaled); ok(0) on timeout; ERESTARTSYS if
 *   interrupted. `timeoutNs` is unsigned in the kernel: pass >= 0. Sleeps: run it in a kthread.
 */
export function* dmaResvWaitTimeout(
  obj: DmaResv,
  usage: DmaResvUsage,
  intr: boolean,
  timeoutNs: number,
): KTaskOp<KResult<number>> {
  let left = timeoutNs !== 0 ? timeoutNs : 1;
  const cursor = dmaResvIterBegin(obj, usage);
  for (let f = dmaResvIterFirstUnlocked(cursor); f !== null; f = dmaResvIterNextUnlocked(cursor)) {
    const r = yield* dmaFenceWaitTimeout(f, intr, left);
    if (!r.ok || r.value <= 0) {
      dmaResvIterEnd(cursor);
      return r;
    }
    left = r.value;
  }
  dmaResvIterEnd(cursor);
  return ok(left);
}

/** dma_resv_set_deadline(): pass a deadline hint to every fence at or below `usage`. */
export function dmaResvSetDeadline(obj: DmaResv, usage: DmaResvUsage, deadlineNs: number): void {
  const cursor = dmaResvIterBegin(obj, usage);
  for (const f of dmaResvForEachFenceUnlocked(cursor)) dmaFenceSetDeadline(f, deadlineNs);
  dmaResvIterEnd(cursor);
}

/** dma_resv_test_signaled(): have all fences at or below `usage` signaled? (No lock needed.) */
export function dmaResvTestSignaled(obj: DmaResv, usage: DmaResvUsage): boolean {
  const cursor = dmaResvIterBegin(obj, usage);
  const pending = dmaResvIterFirstUnlocked(cursor) !== null;
  dmaResvIterEnd(cursor);
  return !pending;
}
