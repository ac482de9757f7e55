// ww-mutex (wait-die) in the simulated concurrency of the engine: back-off with EDEADLK, EALREADY, EINTR,
// the acquire-context bracket's debug warnings, and a property test over random lock orders.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sleep, type TaskOp } from '../../sim/task.js';
import type { KResult } from '../errno.js';
import { type KTaskOp, kthreadRun, runNonBlocking, sendSig } from './sched.js';
import { createDmaBufWorld, type DmaBufWorld } from './world.js';
import {
  type WwAcquireCtx,
  type WwMutex,
  wwAcquireDone,
  wwAcquireFini,
  wwAcquireInit,
  wwMutexInit,
  wwMutexIsLocked,
  wwMutexLock,
  wwMutexLockInterruptible,
  wwMutexLockSlow,
  wwMutexTrylock,
  wwMutexUnlock,
} from './ww-mutex.js';

const newLock = (w: DmaBufWorld, name: string): WwMutex => wwMutexInit(w, w.reservationWwClass, name);

describe('ww_mutex basics', () => {
  it('locks, reports EALREADY for the same context, unlocks', () => {
    const w = createDmaBufWorld();
    const a = newLock(w, 'A');
    const ctx = wwAcquireInit(w, w.reservationWwClass);
    expect(ctx.stamp).toBe(1);
    expect(runNonBlocking(wwMutexLock(a, ctx))).toEqual({ ok: true, value: undefined });
    expect(runNonBlocking(wwMutexLock(a, ctx))).toMatchObject({ ok: false, errno: 'EALREADY' });
    expect(ctx.acquired).toBe(1);
    wwAcquireDone(ctx);
    wwMutexUnlock(a);
    wwAcquireFini(ctx);
    expect(wwMutexIsLocked(a)).toBe(false);
    expect(w.warnings).toEqual([]);
  });

  it('stamps grow per class: the first context is the oldest', () => {
    const w = createDmaBufWorld();
    const s = [1, 2, 3].map(() => wwAcquireInit(w, w.reservationWwClass).stamp);
    expect(s).toEqual([1, 2, 3]);
  });

  it('warns when locking after ww_acquire_done, finishing with locks held, or finishing twice', () => {
    const w = createDmaBufWorld();
    const [a, b] = [newLock(w, 'A'), newLock(w, 'B')];
    const ctx = wwAcquireInit(w, w.reservationWwClass);
    runNonBlocking(wwMutexLock(a, ctx));
    wwAcquireDone(ctx);
    runNonBlocking(wwMutexLock(b, ctx));
    wwAcquireFini(ctx);
    wwAcquireFini(ctx);
    expect(w.warnings).toEqual([
      { func: 'ww_mutex_lock_acquired', message: 'DEBUG_LOCKS_WARN_ON(ww_ctx->done_acquire)' },
      { func: 'ww_acquire_fini', message: 'DEBUG_LOCKS_WARN_ON(ctx->acquired)' },
      { func: 'ww_acquire_fini', message: 'DEBUG_LOCKS_WARN_ON(ctx->acquired)' },
    ]);
  });

  it('warns for lock_slow without a preceding EDEADLK and for unlocking a lock one does not own', () => {
    const w = createDmaBufWorld();
    const a = newLock(w, 'A');
    const ctx = wwAcquireInit(w, w.reservationWwClass);
    runNonBlocking(wwMutexLockSlow(a, ctx));
    wwMutexUnlock(a);
    wwMutexUnlock(a);
    expect(w.warnings.map((x) => x.message)).toEqual([
      'DEBUG_LOCKS_WARN_ON(!ctx->contending_lock)',
      'DEBUG_LOCKS_WARN_ON(__owner_task(owner) != current)',
    ]);
  });

  it('trylock takes a free lock only', () => {
    const w = createDmaBufWorld();
    const a = newLock(w, 'A');
    expect(wwMutexTrylock(a, null)).toBe(true);
    expect(wwMutexTrylock(a, null)).toBe(false);
    wwMutexUnlock(a);
  });
});

describe('wait-die between two tasks locking A,B and B,A', () => {
  it('the younger context gets EDEADLK, backs off, and both transactions finish', () => {
    const w = createDmaBufWorld();
    const [a, b] = [newLock(w, 'A'), newLock(w, 'B')];
    const log: string[] = [];
    const at = (s: string): void => void log.push(`${w.engine.nowNs} ${s}`);
    function* older(): Generator<TaskOp, void, boolean | undefined> {
      const ctx = wwAcquireInit(w, w.reservationWwClass);
      at(`old lock A ${(yield* wwMutexLock(a, ctx)).ok}`);
      yield sleep(10);
      const r = yield* wwMutexLock(b, ctx);
      at(`old lock B ${r.ok}`);
      yield sleep(10);
      wwMutexUnlock(b);
      wwMutexUnlock(a);
      wwAcquireFini(ctx);
      at('old done');
    }
    function* younger(): Generator<TaskOp, void, boolean | undefined> {
      const ctx = wwAcquireInit(w, w.reservationWwClass);
      at(`young lock B ${(yield* wwMutexLock(b, ctx)).ok}`);
      yield sleep(15);
      const r = yield* wwMutexLock(a, ctx);
      at(`young lock A ${r.ok ? 'ok' : r.errno}`);
      expect(r).toMatchObject({ ok: false, errno: 'EDEADLK' });
      wwMutexUnlock(b);
      yield* wwMutexLockSlow(a, ctx);
      at('young slow A');
      at(`young lock B ${(yield* wwMutexLock(b, ctx)).ok}`);
      wwMutexUnlock(a);
      wwMutexUnlock(b);
      wwAcquireFini(ctx);
      at('young done');
    }
    const t1 = kthreadRun(w, 'old', older());
    const t2 = kthreadRun(w, 'young', younger());
    w.engine.run();
    expect(t1.task.state).toBe('done');
    expect(t2.task.state).toBe('done');
    expect(log).toEqual([
      '0 old lock A true',
      '0 young lock B true',
      '15 young lock A EDEADLK', // old has waited for B since t=10; young is younger than A's holder
      '15 old lock B true',
      '25 old done',
      '25 young slow A',
      '25 young lock B true',
      '25 young done',
    ]);
    expect(w.warnings).toEqual([]);
    expect(wwMutexIsLocked(a) || wwMutexIsLocked(b)).toBe(false);
  });

  it('a younger context that holds nothing waits instead of dying', () => {
    const w = createDmaBufWorld();
    const a = newLock(w, 'A');
    const out: KResult<undefined>[] = [];
    kthreadRun(
      w,
      'old',
      (function* () {
        const ctx = wwAcquireInit(w, w.reservationWwClass);
        yield* wwMutexLock(a, ctx);
        yield sleep(100);
        wwMutexUnlock(a);
        wwAcquireFini(ctx);
      })(),
    );
    kthreadRun(
      w,
      'young',
      (function* () {
        const ctx = wwAcquireInit(w, w.reservationWwClass);
        out.push(yield* wwMutexLock(a, ctx));
        wwMutexUnlock(a);
        wwAcquireFini(ctx);
      })(),
    );
    w.engine.run();
    expect(out).toEqual([{ ok: true, value: undefined }]);
    expect(w.engine.nowNs).toBe(100);
  });

  it('an interruptible lock returns EINTR when a signal arrives while waiting', () => {
    const w = createDmaBufWorld();
    const a = newLock(w, 'A');
    runNonBlocking(wwMutexLock(a, null));
    const out: KResult<undefined>[] = [];
    const t = kthreadRun(
      w,
      'waiter',
      (function* () {
        out.push(yield* wwMutexLockInterruptible(a, null));
      })(),
    );
    w.engine.schedule(50, () => sendSig(t.kthread));
    w.engine.run();
    expect(out).toMatchObject([{ ok: false, errno: 'EINTR' }]);
    expect(a.waiters).toEqual([]);
  });
});

/** The back-off loop every ww-mutex user writes (Documentation/locking/ww-mutex-design.rst). */
function* lockAll(
  w: DmaBufWorld,
  locks: readonly WwMutex[],
  ctx: WwAcquireCtx,
  stats: { deadlk: number },
): KTaskOp<WwMutex[]> {
  let slowLocked: WwMutex | null = null;
  for (;;) {
    const held: WwMutex[] = slowLocked ? [slowLocked] : [];
    let contended: WwMutex | null = null;
    for (const l of locks) {
      if (l === slowLocked) continue;
      yield sleep(w.engine.prng.below(20));
      const r = yield* wwMutexLock(l, ctx);
      if (!r.ok) {
        if (r.errno !== 'EDEADLK') throw new Error(`unexpected ${r.errno}`);
        stats.deadlk++;
        contended = l;
        break;
      }
      held.push(l);
    }
    if (!contended) return held;
    for (const l of held) wwMutexUnlock(l);
    yield* wwMutexLockSlow(contended, ctx);
    slowLocked = contended;
  }
}

describe('wait-die property: random lock orders never deadlock', () => {
  it('every transaction completes, holders are exclusive, nothing stays locked', () => {
    const total = { deadlk: 0 };
    const orders = fc.array(fc.array(fc.nat(5), { minLength: 1, maxLength: 6 }), {
      minLength: 2,
      maxLength: 5,
    });
    fc.assert(
      fc.property(orders, fc.integer({ min: 1, max: 1 << 30 }), (raw, seed) => {
        const w = createDmaBufWorld({ seed });
        const locks = Array.from({ length: 6 }, (_, i) => newLock(w, `L${i}`));
        const holder = new Map<WwMutex, string>();
        const tasks = raw.map((order, i) => {
          const mine = [...new Set(order)].map((n) => locks[n]!);
          return kthreadRun(
            w,
            `t${i}`,
            (function* () {
              yield sleep(w.engine.prng.below(30));
              const ctx = wwAcquireInit(w, w.reservationWwClass);
              const held = yield* lockAll(w, mine, ctx, total);
              wwAcquireDone(ctx);
              for (const l of held) {
                expect(holder.has(l), `${l.name} held twice`).toBe(false);
                holder.set(l, `t${i}`);
              }
              yield sleep(1 + w.engine.prng.below(40));
              for (const l of held) {
                holder.delete(l);
                wwMutexUnlock(l);
              }
              wwAcquireFini(ctx);
              return held.length;
            })(),
          );
        });
        w.engine.run();
        tasks.forEach((t, i) => {
          expect(t.task.state, `task ${i} of ${JSON.stringify(raw)} (seed ${seed})`).toBe('done');
          expect(t.task.result).toBe(new Set(raw[i]).size);
        });
        expect(locks.some(wwMutexIsLocked)).toBe(false);
        expect(w.warnings).toEqual([]);
      }),
      { numRuns: 300, seed: 20260521 },
    );
    expect(total.deadlk).toBeGreaterThan(0);
  });
});
