// Wound/wait mutexes: sleeping locks that many tasks take in many orders without deadlocking
// (kernel/locking/mutex.c, kernel/locking/ww_mutex.h, include/linux/ww_mutex.h).
//
// A transaction takes an acquire context stamped from its class; a smaller stamp is older and wins.
// dma-buf's reservation_ww_class is wait-die: a younger context that already holds locks and asks for a
// lock an older one holds (or waits for) "dies" with -EDEADLK, drops everything, and retries with
// ww_mutex_lock_slow() on the contended lock. Wound-wait classes are modelled too (the older one wounds).
//
//   ctx A (stamp 1) holds L1, wants L2        ctx B (stamp 2) holds L2, wants L1
//   A waits on L2 (B is younger)              B is younger than L1's holder A: -EDEADLK
//                                             B unlocks L2 (A wakes, takes L2), B lock_slow(L1) waits for A
//
// The mutex keeps the kernel's FIFO wait list (ordered by stamp among contexts), the wake of the first
// waiter on unlock, and the HANDOFF/PICKUP rule that stops a woken waiter from being starved.

import { err, type KResult, ok } from '../errno.js';
import {
  current,
  type KTaskOp,
  type KThread,
  MAX_SCHEDULE_TIMEOUT,
  scheduleTimeout,
  wakeUpProcess,
} from './sched.js';
import { type DmaBufWorld, debugLocksWarnOn, warn } from './world.js';

/** `struct ww_class`: DEFINE_WD_CLASS (wait-die) or DEFINE_WW_CLASS (wound-wait). */
export interface WwClass {
  readonly name: string;
  readonly isWaitDie: boolean;
  /** The stamp counter (atomic_long); the first context gets 1. */
  stamp: number;
}

/** `struct ww_acquire_ctx`. */
export interface WwAcquireCtx {
  readonly world: DmaBufWorld;
  readonly task: KThread;
  readonly wwClass: WwClass;
  readonly stamp: number;
  readonly isWaitDie: boolean;
  /** Locks held under this context (set to ~0U by ww_acquire_fini so that a second fini warns). */
  acquired: number;
  wounded: boolean;
  doneAcquire: boolean;
  /** The lock that returned -EDEADLK (DEBUG_WW_MUTEXES). */
  contendingLock: WwMutex | null;
}

interface MutexWaiter {
  readonly task: KThread;
  readonly wwCtx: WwAcquireCtx | null;
}

/** `struct ww_mutex` with its embedded `struct mutex`. */
export interface WwMutex {
  readonly world: DmaBufWorld;
  readonly name: string;
  readonly wwClass: WwClass;
  /** The owning thread (mutex->owner without the flag bits). */
  owner: KThread | null;
  /** MUTEX_FLAG_HANDOFF: the first waiter asked for the lock to be handed to it. */
  handoff: boolean;
  /** MUTEX_FLAG_PICKUP: the lock was handed to `owner`, which has not taken it yet. */
  pickup: boolean;
  /** mutex->wait_list, first waiter first. */
  readonly waiters: MutexWaiter[];
  /** The acquire context holding the lock, if it was taken with one. */
  ctx: WwAcquireCtx | null;
}

/** ww_mutex_init(). */
export function wwMutexInit(world: DmaBufWorld, wwClass: WwClass, name = 'ww_mutex'): WwMutex {
  return { world, name, wwClass, owner: null, handoff: false, pickup: false, waiters: [], ctx: null };
}

/** ww_acquire_init(): a new context for the current thread with the class's next stamp. */
export function wwAcquireInit(world: DmaBufWorld, wwClass: WwClass): WwAcquireCtx {
  wwClass.stamp++;
  return {
    world,
    task: current(world),
    wwClass,
    stamp: wwClass.stamp,
    isWaitDie: wwClass.isWaitDie,
    acquired: 0,
    wounded: false,
    doneAcquire: false,
    contendingLock: null,
  };
}

/** ww_acquire_done(): no more locks will be taken under this context (a second call warns). */
export function wwAcquireDone(ctx: WwAcquireCtx): void {
  debugLocksWarnOn(ctx.world, ctx.doneAcquire, 'ww_acquire_done', 'ctx->done_acquire');
  ctx.doneAcquire = true;
}

/** ww_acquire_fini(): end the transaction; warns if locks are still held (or on a second fini). */
export function wwAcquireFini(ctx: WwAcquireCtx): void {
  debugLocksWarnOn(ctx.world, ctx.acquired !== 0, 'ww_acquire_fini', 'ctx->acquired');
  ctx.doneAcquire = true;
  ctx.acquired = 0xffffffff;
}

/** __ww_ctx_less(): is `a` younger than `b` (bigger stamp)? */
const ctxLess = (a: WwAcquireCtx, b: WwAcquireCtx): boolean => a.stamp - b.stamp > 0;

/** __ww_mutex_kill(): a context that holds locks must back off. @returns true for -EDEADLK. */
function kill(lock: WwMutex, ctx: WwAcquireCtx): boolean {
  if (ctx.acquired === 0) return false;
  debugLocksWarnOn(ctx.world, ctx.contendingLock !== null, '__ww_mutex_kill', 'ww_ctx->contending_lock');
  ctx.contendingLock = lock;
  return true;
}

/** __ww_mutex_die(): wait-die: wake a younger waiter that holds locks so it can die. */
function die(waiter: MutexWaiter, wwCtx: WwAcquireCtx): boolean {
  if (!wwCtx.isWaitDie) return false;
  const wctx = waiter.wwCtx!;
  if (wctx.acquired > 0 && ctxLess(wctx, wwCtx)) wakeUpProcess(waiter.task);
  return true;
}

/** __ww_mutex_wound(): wound-wait: an older context wounds a younger holder. */
function wound(lock: WwMutex, wwCtx: WwAcquireCtx, holdCtx: WwAcquireCtx | null): boolean {
  const owner = lock.owner;
  if (!holdCtx || !owner) return false;
  if (wwCtx.acquired > 0 && ctxLess(holdCtx, wwCtx)) {
    holdCtx.wounded = true;
    if (owner !== current(lock.world)) wakeUpProcess(owner);
    return true;
  }
  return false;
}

/** __ww_mutex_check_waiters(): after taking the lock, let the first waiting context die or wound us. */
function checkWaiters(lock: WwMutex, wwCtx: WwAcquireCtx): void {
  for (const cur of lock.waiters) {
    if (!cur.wwCtx) continue;
    if (die(cur, wwCtx) || wound(lock, cur.wwCtx, wwCtx)) break;
  }
}

/** ww_mutex_lock_acquired(): bind the lock to the context, with the DEBUG_WW_MUTEXES checks. */
function lockAcquired(lock: WwMutex, ctx: WwAcquireCtx): void {
  const w = ctx.world;
  debugLocksWarnOn(w, lock.ctx !== null, 'ww_mutex_lock_acquired', 'ww->ctx');
  debugLocksWarnOn(w, ctx.doneAcquire, 'ww_mutex_lock_acquired', 'ww_ctx->done_acquire');
  if (ctx.contendingLock) {
    debugLocksWarnOn(
      w,
      ctx.contendingLock !== lock,
      'ww_mutex_lock_acquired',
      'ww_ctx->contending_lock != ww',
    );
    debugLocksWarnOn(w, ctx.acquired > 0, 'ww_mutex_lock_acquired', 'ww_ctx->acquired > 0');
    ctx.contendingLock = null;
  }
  debugLocksWarnOn(
    w,
    ctx.wwClass !== lock.wwClass,
    'ww_mutex_lock_acquired',
    'ww_ctx->ww_class != ww->ww_class',
  );
  ctx.acquired++;
  lock.ctx = ctx;
}

/** __ww_mutex_check_kill(): must this waiting context die now? */
function checkKill(lock: WwMutex, waiter: MutexWaiter, ctx: WwAcquireCtx): boolean {
  if (ctx.acquired === 0) return false;
  if (!ctx.isWaitDie) return ctx.wounded ? kill(lock, ctx) : false;
  if (lock.ctx && ctxLess(ctx, lock.ctx)) return kill(lock, ctx);
  // Any context queued ahead of us is older (the list is in stamp order).
  const i = lock.waiters.indexOf(waiter);
  for (let j = i - 1; j >= 0; j--) if (lock.waiters[j]!.wwCtx) return kill(lock, ctx);
  return false;
}

/** __ww_mutex_add_waiter(): queue in stamp order; wait-die may die right here. @returns true for -EDEADLK. */
function addWaiter(waiter: MutexWaiter, lock: WwMutex, wwCtx: WwAcquireCtx | null): boolean {
  if (!wwCtx) {
    lock.waiters.push(waiter);
    return false;
  }
  let pos = -1;
  for (let i = lock.waiters.length - 1; i >= 0; i--) {
    const cur = lock.waiters[i]!;
    if (!cur.wwCtx) continue;
    if (ctxLess(wwCtx, cur.wwCtx)) {
      // An older context is already waiting: no point queueing behind it with locks held.
      if (wwCtx.isWaitDie && kill(lock, wwCtx)) return true;
      break;
    }
    pos = i;
    die(cur, wwCtx);
  }
  if (pos < 0) lock.waiters.push(waiter);
  else lock.waiters.splice(pos, 0, waiter);
  if (!wwCtx.isWaitDie) wound(lock, wwCtx, lock.ctx);
  return false;
}

/** __mutex_remove_waiter(): the flags go when the list empties. */
function removeWaiter(lock: WwMutex, waiter: MutexWaiter): void {
  const i = lock.waiters.indexOf(waiter);
  if (i >= 0) lock.waiters.splice(i, 1);
  if (lock.waiters.length === 0) lock.handoff = false;
}

/** __mutex_trylock_common(): take a free lock, or one handed to us; the first waiter may ask for handoff. */
function mutexTrylock(lock: WwMutex, me: KThread, requestHandoff = false): boolean {
  if (lock.pickup) {
    if (lock.owner !== me) return false;
    lock.pickup = false;
    return true;
  }
  if (lock.owner === null) {
    lock.owner = me;
    return true;
  }
  if (requestHandoff) lock.handoff = true;
  return false;
}

/** __mutex_lock_common() with a ww context: 0, -EALREADY, -EDEADLK or -EINTR. */
function* mutexLockCommon(
  lock: WwMutex,
  interruptible: boolean,
  wwCtx: WwAcquireCtx | null,
): KTaskOp<KResult<undefined>> {
  const world = lock.world;
  const me = current(world);
  if (wwCtx) {
    if (lock.ctx === wwCtx) return err('EALREADY', `${lock.name} is already held by this acquire context`);
    if (wwCtx.acquired === 0) wwCtx.wounded = false;
  } else if (lock.owner === me && !lock.pickup) {
    warn(world, '__mutex_lock_common', `WARNING: possible recursive locking detected (${lock.name})`);
  }
  if (mutexTrylock(lock, me)) {
    if (wwCtx) {
      lockAcquired(lock, wwCtx);
      if (lock.waiters.length > 0) checkWaiters(lock, wwCtx);
    }
    return ok(undefined);
  }
  const waiter: MutexWaiter = { task: me, wwCtx };
  if (addWaiter(waiter, lock, wwCtx))
    return err('EDEADLK', `back off: an older context holds or waits for ${lock.name}`);
  const state = interruptible ? 'interruptible' : 'uninterruptible';
  for (;;) {
    if (mutexTrylock(lock, me)) break;
    if (interruptible && me.sigPending) {
      removeWaiter(lock, waiter);
      return err('EINTR', 'interrupted by a signal');
    }
    if (wwCtx && checkKill(lock, waiter, wwCtx)) {
      removeWaiter(lock, waiter);
      return err('EDEADLK', `back off: an older context holds or waits for ${lock.name}`);
    }
    yield* scheduleTimeout(world, MAX_SCHEDULE_TIMEOUT, state);
    if (mutexTrylock(lock, me, lock.waiters[0] === waiter)) break;
  }
  if (wwCtx && !wwCtx.isWaitDie && lock.waiters[0] !== waiter) checkWaiters(lock, wwCtx);
  removeWaiter(lock, waiter);
  if (wwCtx) lockAcquired(lock, wwCtx);
  return ok(undefined);
}

/**
 * ww_mutex_lock(): take the lock as part of the transaction `ctx` (or as a plain mutex without one).
 * @returns ok; EALREADY if `ctx` already holds it; EDEADLK if `ctx` must back off (drop every lock it
 *   holds, then ww_mutex_lock_slow() this one). May sleep: run it in a kthread.
 */
export function wwMutexLock(lock: WwMutex, ctx: WwAcquireCtx | null): KTaskOp<KResult<undefined>> {
  return mutexLockCommon(lock, false, ctx);
}

/** ww_mutex_lock_interruptible(): as wwMutexLock, plus EINTR when a signal arrives while waiting. */
export function wwMutexLockInterruptible(
  lock: WwMutex,
  ctx: WwAcquireCtx | null,
): KTaskOp<KResult<undefined>> {
  return mutexLockCommon(lock, true, ctx);
}

/** ww_mutex_lock_slow(): after -EDEADLK and dropping every lock, wait for the contended lock. */
export function* wwMutexLockSlow(lock: WwMutex, ctx: WwAcquireCtx): KTaskOp<void> {
  debugLocksWarnOn(ctx.world, ctx.contendingLock === null, 'ww_mutex_lock_slow', '!ctx->contending_lock');
  yield* mutexLockCommon(lock, false, ctx);
}

/** ww_mutex_lock_slow_interruptible(). @returns ok or EINTR. */
export function* wwMutexLockSlowInterruptible(lock: WwMutex, ctx: WwAcquireCtx): KTaskOp<KResult<undefined>> {
  debugLocksWarnOn(
    ctx.world,
    ctx.contendingLock === null,
    'ww_mutex_lock_slow_interruptible',
    '!ctx->contending_lock',
  );
  return yield* mutexLockCommon(lock, true, ctx);
}

/** ww_mutex_trylock(). @returns true if the lock was free and is now held (under `ctx` if given). */
export function wwMutexTrylock(lock: WwMutex, ctx: WwAcquireCtx | null): boolean {
  if (ctx && ctx.acquired === 0) ctx.wounded = false;
  if (!mutexTrylock(lock, current(lock.world))) return false;
  if (ctx) {
    lockAcquired(lock, ctx);
    if (lock.waiters.length > 0) checkWaiters(lock, ctx);
  }
  return true;
}

/** ww_mutex_unlock(): release; the first waiter is woken (and handed the lock if it asked). */
export function wwMutexUnlock(lock: WwMutex): void {
  const world = lock.world;
  if (lock.ctx) {
    debugLocksWarnOn(world, lock.ctx.acquired === 0, 'ww_mutex_unlock', '!lock->ctx->acquired');
    if (lock.ctx.acquired > 0) lock.ctx.acquired--;
    lock.ctx = null;
  }
  debugLocksWarnOn(
    world,
    lock.owner !== current(world),
    '__mutex_unlock_slowpath',
    '__owner_task(owner) != current',
  );
  debugLocksWarnOn(world, lock.pickup, '__mutex_unlock_slowpath', 'owner & MUTEX_FLAG_PICKUP');
  const next = lock.waiters[0]?.task ?? null;
  if (lock.handoff && next) {
    lock.owner = next;
    lock.pickup = true;
  } else {
    lock.owner = null;
    lock.pickup = false;
  }
  lock.handoff = false;
  if (next) wakeUpProcess(next);
}

/** ww_mutex_is_locked(). */
export const wwMutexIsLocked = (lock: WwMutex): boolean => lock.owner !== null;

/** Does the current thread hold the lock? (lockdep's lock_is_held(); false while a handoff is pending.) */
export const wwMutexHeldByCurrent = (lock: WwMutex): boolean =>
  lock.owner === current(lock.world) && !lock.pickup;
