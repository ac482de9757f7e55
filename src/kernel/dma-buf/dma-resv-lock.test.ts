// Locking several reservation objects in one ww transaction: dma_resv_lock() with -EDEADLK back-off and
// dma_resv_lock_slow(), -EALREADY, and fences added under the locks (the way drm_exec-style callers do).

import { describe, expect, it } from 'vitest';
import { sleep } from '../../sim/task.js';
import { dmaFenceSignal } from './dma-fence.js';
import {
  type DmaResv,
  dmaResvAddFence,
  dmaResvInit,
  dmaResvIsLocked,
  dmaResvLock,
  dmaResvLockingCtx,
  dmaResvLockSlow,
  dmaResvReserveFences,
  dmaResvUnlock,
} from './dma-resv.js';
import { dmaResvGetFences } from './dma-resv-iter.js';
import { mockFenceNewContext } from './mock-fence.js';
import { type KTaskOp, kthreadRun, runNonBlocking } from './sched.js';
import { createDmaBufWorld } from './world.js';
import { type WwAcquireCtx, wwAcquireDone, wwAcquireFini, wwAcquireInit } from './ww-mutex.js';

/** Lock every object of `objs` under `ctx`, backing off on EDEADLK. @returns how often it backed off. */
function* lockObjs(objs: readonly DmaResv[], ctx: WwAcquireCtx): KTaskOp<number> {
  let backoffs = 0;
  let contended: DmaResv | null = null;
  for (;;) {
    const held: DmaResv[] = contended ? [contended] : [];
    let failed: DmaResv | null = null;
    for (const obj of objs) {
      if (obj === contended) continue;
      yield sleep(5);
      const r = yield* dmaResvLock(obj, ctx);
      if (!r.ok) {
        expect(r.errno).toBe('EDEADLK');
        failed = obj;
        break;
      }
      held.push(obj);
    }
    if (!failed) return backoffs;
    backoffs++;
    for (const obj of held) dmaResvUnlock(obj);
    yield* dmaResvLockSlow(failed, ctx);
    contended = failed;
  }
}

describe('dma_resv ww transactions', () => {
  it('two jobs lock two buffers in opposite orders, the younger backs off, both add their fences', () => {
    const w = createDmaBufWorld();
    const [a, b] = [dmaResvInit(w), dmaResvInit(w)];
    const backoffs: number[] = [];
    const job = (name: string, objs: DmaResv[]) =>
      kthreadRun(
        w,
        name,
        (function* () {
          const ctx = wwAcquireInit(w, w.reservationWwClass);
          backoffs.push(yield* lockObjs(objs, ctx));
          wwAcquireDone(ctx);
          const fence = mockFenceNewContext(w);
          for (const obj of objs) {
            expect(dmaResvLockingCtx(obj)).toBe(ctx);
            dmaResvReserveFences(obj, 1);
            dmaResvAddFence(obj, fence, 'write');
          }
          yield sleep(20);
          dmaFenceSignal(fence);
          for (const obj of objs) dmaResvUnlock(obj);
          wwAcquireFini(ctx);
        })(),
      );
    const j1 = job('job1', [a, b]);
    const j2 = job('job2', [b, a]);
    w.engine.run();
    expect([j1.task.state, j2.task.state]).toEqual(['done', 'done']);
    expect(backoffs.sort()).toEqual([0, 1]);
    expect(dmaResvIsLocked(a) || dmaResvIsLocked(b)).toBe(false);
    // The second job found the first job's fence signaled and reused its slot.
    for (const obj of [a, b]) expect(obj.fences!.numFences).toBe(1);
    expect(dmaResvGetFences(a, 'bookkeep')).toEqual({ ok: true, value: [] }); // both signaled
    expect(w.warnings).toEqual([]);
  });

  it('locking an object twice in one transaction is EALREADY', () => {
    const w = createDmaBufWorld();
    const obj = dmaResvInit(w);
    const ctx = wwAcquireInit(w, w.reservationWwClass);
    expect(runNonBlocking(dmaResvLock(obj, ctx)).ok).toBe(true);
    expect(runNonBlocking(dmaResvLock(obj, ctx))).toMatchObject({ ok: false, errno: 'EALREADY' });
    dmaResvUnlock(obj);
    wwAcquireFini(ctx);
    expect(w.warnings).toEqual([]);
  });
});
