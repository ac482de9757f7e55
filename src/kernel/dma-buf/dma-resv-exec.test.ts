// drm_exec-style locking of many reservation objects: opposite orders back off and both finish,
// duplicates, interrupted waits, and a fast-check property over random jobs (every job ends up holding
// all its objects at once, no two jobs ever hold one object together, no lock warning).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sleep } from '../../sim/task.js';
import {
  type DmaResv,
  dmaResvHeld,
  dmaResvInit,
  dmaResvIsLocked,
  dmaResvLock,
  dmaResvUnlock,
} from './dma-resv.js';
import { drmExecFini, drmExecLockAll } from './dma-resv-exec.js';
import { kthreadRun, runNonBlocking, sendSig } from './sched.js';
import { createDmaBufWorld } from './world.js';

describe('drm_exec transactions', () => {
  it('wait-die: the younger job holding a lock the older one waits behind backs off once', () => {
    const w = createDmaBufWorld();
    const [a, b, x] = [dmaResvInit(w), dmaResvInit(w), dmaResvInit(w)];
    const log: string[] = [];
    const job = (name: string, objs: DmaResv[], delay: number) =>
      kthreadRun(
        w,
        name,
        (function* () {
          yield sleep(delay);
          const r = yield* drmExecLockAll(w, objs);
          if (!r.ok) throw new Error(r.detail);
          log.push(`${name} at ${w.engine.nowNs}, backoffs ${r.value.backoffs}`);
          expect(objs.every(dmaResvHeld)).toBe(true);
          yield sleep(100);
          drmExecFini(r.value);
        })(),
      );
    // x is busy until t=10: the older job holds a and waits for x; the younger holds b and wants a.
    kthreadRun(
      w,
      'holder',
      (function* () {
        yield* dmaResvLock(x, null);
        yield sleep(10);
        dmaResvUnlock(x);
      })(),
    );
    job('older', [a, x], 1);
    job('younger', [b, a], 2);
    w.engine.run();
    expect(log).toEqual(['older at 10, backoffs 0', 'younger at 110, backoffs 1']);
    expect([a, b, x].map(dmaResvIsLocked)).toEqual([false, false, false]);
    expect(w.warnings).toEqual([]);
  });

  it('a duplicate is EALREADY unless duplicates are ignored', () => {
    const w = createDmaBufWorld();
    const a = dmaResvInit(w);
    const dup = runNonBlocking(drmExecLockAll(w, [a, a]));
    expect(dup).toMatchObject({ ok: false, errno: 'EALREADY' });
    expect(dmaResvIsLocked(a)).toBe(false);
    const ok = runNonBlocking(drmExecLockAll(w, [a, a], { ignoreDuplicates: true }));
    expect(ok.ok && ok.value.objects).toEqual([a]);
    if (ok.ok) drmExecFini(ok.value);
    expect(w.warnings).toEqual([]);
  });

  it('an interruptible wait ends with EINTR and leaves nothing locked', () => {
    const w = createDmaBufWorld();
    const [a, b] = [dmaResvInit(w), dmaResvInit(w)];
    let result = '';
    kthreadRun(
      w,
      'owner',
      (function* () {
        yield* dmaResvLock(b, null);
        yield sleep(1000);
        dmaResvUnlock(b);
      })(),
    );
    const { kthread } = kthreadRun(
      w,
      'waiter',
      (function* () {
        yield sleep(1);
        const r = yield* drmExecLockAll(w, [a, b], { interruptible: true });
        result = r.ok ? 'ok' : r.errno;
      })(),
    );
    w.engine.schedule(50, () => sendSig(kthread));
    w.engine.run();
    expect(result).toBe('EINTR');
    expect(dmaResvIsLocked(a)).toBe(false);
  });

  it('property: random jobs over shared buffers all finish with mutual exclusion and no warning', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            start: fc.nat(50),
            hold: fc.integer({ min: 1, max: 40 }),
            objs: fc.array(fc.nat(5), { minLength: 1, maxLength: 6 }),
          }),
          { minLength: 2, maxLength: 6 },
        ),
        (jobs) => {
          const w = createDmaBufWorld();
          const objs = Array.from({ length: 6 }, () => dmaResvInit(w));
          const holder = new Map<DmaResv, string>();
          let finished = 0;
          jobs.forEach((j, n) => {
            const mine = j.objs.map((i) => objs[i]!);
            kthreadRun(
              w,
              `job${n}`,
              (function* () {
                yield sleep(j.start);
                const r = yield* drmExecLockAll(w, mine, { ignoreDuplicates: true });
                if (!r.ok) throw new Error(r.detail);
                for (const o of new Set(mine)) {
                  if (holder.has(o)) throw new Error(`job${n} and ${holder.get(o)} hold one object`);
                  holder.set(o, `job${n}`);
                }
                yield sleep(j.hold);
                for (const o of new Set(mine)) holder.delete(o);
                drmExecFini(r.value);
                finished++;
              })(),
            );
          });
          w.engine.run();
          return (
            finished === jobs.length && w.warnings.length === 0 && objs.every((o) => !dmaResvIsLocked(o))
          );
        },
      ),
      { numRuns: 150 },
    );
  });
});
