// Locking many reservation objects at once (drivers/gpu/drm/drm_exec.c, include/drm/drm_exec.h): one
// ww transaction, -EDEADLK back-off with the contended lock taken slow first, duplicates ignored on
// request. Exporters use it to lock a buffer together with the buffers an eviction touches; the
// model's callers pass reservation objects where drm_exec takes GEM objects.
//
//   drm_exec_init --> until all locked: drm_exec_cleanup() then lock each object
//                      lock_obj: lock contended slow first (prelocked), then dma_resv_lock(obj, ticket)
//                      -EDEADLK: remember obj as contended, retry: unlock all, start over
//                 --> drm_exec_fini: unlock all, ww_acquire_fini

import { err, type KResult, ok } from '../errno.js';
import {
  type DmaResv,
  dmaResvLock,
  dmaResvLockInterruptible,
  dmaResvLockSlow,
  dmaResvLockSlowInterruptible,
  dmaResvUnlock,
} from './dma-resv.js';
import type { KTaskOp } from './sched.js';
import type { DmaBufWorld } from './world.js';
import { type WwAcquireCtx, wwAcquireDone, wwAcquireFini, wwAcquireInit } from './ww-mutex.js';

/** `DRM_EXEC_INTERRUPTIBLE_WAIT` and `DRM_EXEC_IGNORE_DUPLICATES`. */
export interface DrmExecFlags {
  readonly interruptible?: boolean;
  readonly ignoreDuplicates?: boolean;
}

/** `struct drm_exec`. */
export interface DrmExec {
  readonly world: DmaBufWorld;
  readonly flags: DrmExecFlags;
  ticket: WwAcquireCtx;
  /** The objects locked so far, in locking order. */
  readonly objects: DmaResv[];
  /** The object that returned -EDEADLK (the kernel's DRM_EXEC_DUMMY before the first pass: 'dummy'). */
  contended: DmaResv | 'dummy' | null;
  /** The contended object, locked slow at the start of the retry. */
  prelocked: DmaResv | null;
  /** How often the transaction backed off (model statistic). */
  backoffs: number;
}

/** `drm_exec_init()`: a new transaction; the first drm_exec_cleanup() starts the ticket. */
export function drmExecInit(world: DmaBufWorld, flags: DrmExecFlags = {}): DrmExec {
  return {
    world,
    flags,
    ticket: null as unknown as WwAcquireCtx,
    objects: [],
    contended: 'dummy',
    prelocked: null,
    backoffs: 0,
  };
}

/** `drm_exec_unlock_all()`: unlock in reverse order; the prelocked object is among them. */
function unlockAll(exec: DrmExec): void {
  for (const o of exec.objects.splice(0).reverse()) dmaResvUnlock(o);
  exec.prelocked = null;
}

/**
 * `drm_exec_cleanup()`: the loop condition of drm_exec_until_all_locked(). @returns true to run the
 * locking pass (again), false when every object is locked (the ticket is then done).
 */
export function drmExecCleanup(exec: DrmExec): boolean {
  if (exec.contended === null) {
    wwAcquireDone(exec.ticket);
    return false;
  }
  if (exec.contended === 'dummy') {
    exec.contended = null;
    exec.ticket = wwAcquireInit(exec.world, exec.world.reservationWwClass);
    return true;
  }
  unlockAll(exec);
  exec.backoffs++;
  return true;
}

/** `drm_exec_lock_contended()`: take the contended object slow before anything else. */
function* lockContended(exec: DrmExec): KTaskOp<KResult<undefined>> {
  const obj = exec.contended;
  if (obj === null || obj === 'dummy') return ok(undefined);
  exec.contended = null;
  if (exec.flags.interruptible) {
    const r = yield* dmaResvLockSlowInterruptible(obj, exec.ticket);
    if (!r.ok) return r;
  } else yield* dmaResvLockSlow(obj, exec.ticket);
  exec.objects.push(obj);
  exec.prelocked = obj;
  return ok(undefined);
}

/**
 * `drm_exec_lock_obj()`: lock one object within the transaction.
 * @returns ok; EDEADLK (the object is remembered as contended: retry the pass); EALREADY for an object
 *   locked twice without ignoreDuplicates; EINTR when an interruptible wait is interrupted.
 * May sleep.
 */
export function* drmExecLockObj(exec: DrmExec, obj: DmaResv): KTaskOp<KResult<undefined>> {
  const c = yield* lockContended(exec);
  if (!c.ok) return c;
  if (exec.prelocked === obj) {
    exec.prelocked = null;
    return ok(undefined);
  }
  const r = exec.flags.interruptible
    ? yield* dmaResvLockInterruptible(obj, exec.ticket)
    : yield* dmaResvLock(obj, exec.ticket);
  if (!r.ok && r.errno === 'EDEADLK') {
    exec.contended = obj;
    return r;
  }
  if (!r.ok && r.errno === 'EALREADY' && exec.flags.ignoreDuplicates) return ok(undefined);
  if (!r.ok) return r;
  exec.objects.push(obj);
  return ok(undefined);
}

/** `drm_exec_fini()`: unlock everything and end the ticket. */
export function drmExecFini(exec: DrmExec): void {
  unlockAll(exec);
  // A transaction that never started its ticket (still DRM_EXEC_DUMMY) has nothing to finish.
  if (exec.contended === 'dummy') return;
  exec.contended = null;
  wwAcquireFini(exec.ticket);
}

/**
 * The drm_exec_until_all_locked() loop over a fixed set: lock every object of `objs`, backing off and
 * retrying on contention (drm_exec_retry_on_contention).
 * @returns the transaction with everything locked (release with drmExecFini); EALREADY for a duplicate
 *   without ignoreDuplicates, EINTR for an interrupted wait (the transaction is finished).
 * May sleep.
 */
export function* drmExecLockAll(
  world: DmaBufWorld,
  objs: readonly DmaResv[],
  flags: DrmExecFlags = {},
): KTaskOp<KResult<DrmExec>> {
  const exec = drmExecInit(world, flags);
  while (drmExecCleanup(exec)) {
    for (const obj of objs) {
      const r = yield* drmExecLockObj(exec, obj);
      if (r.ok) continue;
      if (r.errno === 'EDEADLK') break;
      drmExecFini(exec);
      return err(r.errno, r.detail);
    }
  }
  return ok(exec);
}
