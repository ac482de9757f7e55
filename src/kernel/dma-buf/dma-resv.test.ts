// The dma_resv selftests (drivers/dma-buf/st-dma-resv.c, run once per usage class as 6.1 does), retold,
// plus the usage query rule, the reserve growth and add-fence replacement rules and the lock assertions.

import { describe, expect, it } from 'vitest';
import { sleep } from '../../sim/task.js';
import type { KResult } from '../errno.js';
import {
  type DmaFence,
  dmaFenceEnableSwSignaling,
  dmaFenceInit,
  dmaFencePut,
  dmaFenceSignal,
} from './dma-fence.js';
import { dmaFenceArrayCreate, dmaFenceIsArray } from './dma-fence-array.js';
import {
  DMA_RESV_USAGES,
  type DmaResv,
  type DmaResvUsage,
  dmaResvAddFence,
  dmaResvFini,
  dmaResvInit,
  dmaResvLock,
  dmaResvReplaceFences,
  dmaResvReserveFences,
  dmaResvUnlock,
  dmaResvUsageRw,
  kmallocSizeRoundup,
} from './dma-resv.js';
import {
  dmaResvCopyFences,
  dmaResvForEachFence,
  dmaResvForEachFenceUnlocked,
  dmaResvGetFences,
  dmaResvGetSingleton,
  dmaResvIterBegin,
  dmaResvIterEnd,
  dmaResvIterIsRestarted,
  dmaResvIterUsage,
  dmaResvTestSignaled,
  dmaResvWaitTimeout,
} from './dma-resv-iter.js';
import { kthreadRun, runNonBlocking } from './sched.js';
import { createDmaBufWorld, type DmaBufWorld } from './world.js';

/** st-dma-resv's alloc_fence(): a "selftest" fence on context 0, seqno 0, signaling enabled. */
function allocFence(w: DmaBufWorld, context = 0n, seqno = 0n): DmaFence {
  const f = dmaFenceInit(
    w,
    { get_driver_name: () => 'selftest', get_timeline_name: () => 'selftest' },
    context,
    seqno,
  );
  dmaFenceEnableSwSignaling(f);
  return f;
}

const lock = (obj: DmaResv): KResult<undefined> => runNonBlocking(dmaResvLock(obj, null));

/** Lock, reserve one slot, add `f` with `usage`. */
function resvWith(w: DmaBufWorld, f: DmaFence, usage: DmaResvUsage): DmaResv {
  const resv = dmaResvInit(w);
  expect(lock(resv).ok).toBe(true);
  expect(dmaResvReserveFences(resv, 1).ok).toBe(true);
  dmaResvAddFence(resv, f, usage);
  return resv;
}

describe('st-dma-resv', () => {
  it('sanitycheck: an initialised resv locks and unlocks', () => {
    const w = createDmaBufWorld();
    const f = allocFence(w);
    dmaFenceSignal(f);
    dmaFencePut(f);
    const resv = dmaResvInit(w);
    expect(lock(resv)).toEqual({ ok: true, value: undefined });
    dmaResvUnlock(resv);
    dmaResvFini(resv);
    expect(w.warnings).toEqual([]);
  });

  describe.each(DMA_RESV_USAGES)('usage %s', (usage) => {
    it('test_signaling: not signaled until the fence is', () => {
      const w = createDmaBufWorld();
      const f = allocFence(w);
      const resv = resvWith(w, f, usage);
      expect(dmaResvTestSignaled(resv, usage)).toBe(false);
      dmaFenceSignal(f);
      expect(dmaResvTestSignaled(resv, usage)).toBe(true);
      dmaResvUnlock(resv);
      dmaResvFini(resv);
      dmaFencePut(f);
      expect(f.freed).toBe(true);
      expect(w.warnings).toEqual([]);
    });

    it('test_for_each: the locked walk yields exactly the fence, with its usage', () => {
      const w = createDmaBufWorld();
      const f = allocFence(w);
      const resv = resvWith(w, f, usage);
      const cursor = dmaResvIterBegin(resv, usage);
      const seen: [DmaFence, DmaResvUsage][] = [];
      for (const fence of dmaResvForEachFence(cursor)) seen.push([fence, dmaResvIterUsage(cursor)]);
      expect(seen).toEqual([[f, usage]]);
      dmaFenceSignal(f);
      dmaResvUnlock(resv);
      dmaResvFini(resv);
      dmaFencePut(f);
      expect(w.warnings).toEqual([]);
    });

    it('test_for_each_unlocked: first pass flagged restarted; a replaced list forces one more restart', () => {
      const w = createDmaBufWorld();
      const f = allocFence(w);
      const resv = resvWith(w, f, usage);
      dmaResvUnlock(resv);
      const cursor = dmaResvIterBegin(resv, usage);
      const passes: [DmaFence, boolean, DmaResvUsage][] = [];
      for (const fence of dmaResvForEachFenceUnlocked(cursor)) {
        passes.push([fence, dmaResvIterIsRestarted(cursor), dmaResvIterUsage(cursor)]);
        // cursor.fences = (void *)~0: pretend the list changed under us, which must trigger a restart.
        if (passes.length === 1) cursor.fences = { numFences: 0, maxFences: 0, table: [] };
      }
      expect(passes).toEqual([
        [f, true, usage],
        [f, true, usage],
      ]);
      dmaResvIterEnd(cursor);
      dmaFenceSignal(f);
      dmaResvFini(resv);
      dmaFencePut(f);
      expect(f.freed).toBe(true);
    });

    it('test_get_fences: exactly [f], with a reference each', () => {
      const w = createDmaBufWorld();
      const f = allocFence(w);
      const resv = resvWith(w, f, usage);
      dmaResvUnlock(resv);
      const r = dmaResvGetFences(resv, usage);
      expect(r).toEqual({ ok: true, value: [f] });
      expect(f.refcount).toBe(3);
      dmaFenceSignal(f);
      for (const x of r.ok ? r.value : []) dmaFencePut(x);
      dmaResvFini(resv);
      dmaFencePut(f);
      expect(f.freed).toBe(true);
    });
  });
});

describe('usage classes', () => {
  it('a query for usage U returns the fences at or below U; usage_rw inverts', () => {
    const w = createDmaBufWorld();
    const resv = dmaResvInit(w);
    lock(resv);
    dmaResvReserveFences(resv, 4);
    const byUsage = DMA_RESV_USAGES.map((u, i) => {
      const f = allocFence(w, BigInt(i + 1), 1n);
      dmaResvAddFence(resv, f, u);
      return f;
    });
    DMA_RESV_USAGES.forEach((u, i) => {
      const r = dmaResvGetFences(resv, u);
      expect(r.ok && r.value).toEqual(byUsage.slice(0, i + 1));
    });
    expect(dmaResvUsageRw(true)).toBe('read');
    expect(dmaResvUsageRw(false)).toBe('write');
  });
});

describe('reserve and add', () => {
  it('grows by max(num + n, 2 * max), rounded up to the kmalloc bucket, dropping signaled fences', () => {
    expect([56, 88, 152, 280, 9000].map(kmallocSizeRoundup)).toEqual([64, 96, 192, 512, 16384]);
    const w = createDmaBufWorld({ debugMutexes: false });
    const resv = dmaResvInit(w);
    lock(resv);
    dmaResvReserveFences(resv, 1);
    const first = resv.fences!;
    expect(first.maxFences).toBe(5); // max(4, 1) slots = 56 bytes -> kmalloc-64 -> 5 slots
    const fences = Array.from({ length: 5 }, (_, i) => allocFence(w, BigInt(i + 1), 1n));
    for (const f of fences) dmaResvAddFence(resv, f, 'read');
    dmaResvReserveFences(resv, 0);
    expect(resv.fences).toBe(first); // 5 + 0 <= 5: nothing to do
    dmaFenceSignal(fences[0]!);
    dmaResvReserveFences(resv, 1);
    expect(resv.fences).not.toBe(first);
    expect(resv.fences!.maxFences).toBe(13); // max(6, 10) = 10 slots = 104 bytes -> kmalloc-128 -> 13
    expect(resv.fences!.numFences).toBe(4); // the signaled fence was dropped
    expect(fences[0]!.refcount).toBe(1);
    expect(w.warnings).toEqual([]);
  });

  it('replaces a later-or-same fence of the same context at or below the old usage, and signaled ones', () => {
    const w = createDmaBufWorld();
    const resv = dmaResvInit(w);
    lock(resv);
    dmaResvReserveFences(resv, 8);
    const ctx = 7n;
    const [a1, a2, a3] = [allocFence(w, ctx, 1n), allocFence(w, ctx, 2n), allocFence(w, ctx, 3n)];
    const entries = () => resv.fences!.table.slice(0, resv.fences!.numFences).map((e) => [e.fence, e.usage]);
    dmaResvAddFence(resv, a2, 'read');
    dmaResvAddFence(resv, a3, 'write'); // later, usage below READ: replaces
    expect(entries()).toEqual([[a3, 'write']]);
    dmaResvAddFence(resv, a3, 'write'); // the same fence again: no second slot
    expect(entries()).toEqual([[a3, 'write']]);
    dmaResvAddFence(resv, a1, 'write'); // earlier seqno: appended
    const b = allocFence(w, 8n, 1n);
    dmaResvAddFence(resv, b, 'bookkeep'); // another context: appended
    expect(entries()).toEqual([
      [a3, 'write'],
      [a1, 'write'],
      [b, 'bookkeep'],
    ]);
    const a4 = allocFence(w, ctx, 4n);
    dmaResvAddFence(resv, a4, 'read'); // later, but READ is above the old WRITE: appended
    expect(resv.fences!.numFences).toBe(4);
    dmaFenceSignal(b);
    const c = allocFence(w, 9n, 1n);
    dmaResvAddFence(resv, c, 'kernel'); // b has signaled: its slot is reused
    expect(entries()[2]).toEqual([c, 'kernel']);
    expect(a2.refcount).toBe(1);
    expect(b.refcount).toBe(1);
  });

  it('replace_fences swaps every fence of a context', () => {
    const w = createDmaBufWorld();
    const resv = dmaResvInit(w);
    lock(resv);
    dmaResvReserveFences(resv, 2);
    const [x, y, z] = [allocFence(w, 1n, 1n), allocFence(w, 2n, 1n), allocFence(w, 3n, 1n)];
    dmaResvAddFence(resv, x, 'write');
    dmaResvAddFence(resv, y, 'read');
    dmaResvReplaceFences(resv, 1n, z, 'bookkeep');
    expect(resv.fences!.table.map((e) => [e.fence, e.usage])).toEqual([
      [z, 'bookkeep'],
      [y, 'read'],
    ]);
    expect([x.refcount, z.refcount]).toEqual([1, 2]);
  });

  it('adding without a reserved slot is a kernel BUG; with debug mutexes unlock forgets reservations', () => {
    const w = createDmaBufWorld();
    const resv = dmaResvInit(w);
    lock(resv);
    expect(() => dmaResvAddFence(resv, allocFence(w), 'read')).toThrow(/no fence slot reserved/);
    dmaResvReserveFences(resv, 3);
    dmaResvAddFence(resv, allocFence(w, 1n, 1n), 'read');
    dmaResvUnlock(resv);
    lock(resv);
    expect(() => dmaResvAddFence(resv, allocFence(w, 2n, 1n), 'read')).toThrow(
      /kernel BUG in dma_resv_add_fence/,
    );
    const relaxed = createDmaBufWorld({ debugMutexes: false });
    const r2 = dmaResvInit(relaxed);
    lock(r2);
    dmaResvReserveFences(r2, 3);
    dmaResvUnlock(r2);
    lock(r2);
    dmaResvAddFence(r2, allocFence(relaxed), 'read');
    expect(r2.fences!.numFences).toBe(1);
  });

  it('WARNs for a container and reports locked-only calls made without the lock (lockdep)', () => {
    const w = createDmaBufWorld();
    const resv = dmaResvInit(w);
    dmaResvReserveFences(resv, 2);
    dmaResvAddFence(resv, allocFence(w), 'read');
    const array = dmaFenceArrayCreate(w, [allocFence(w, 1n, 1n)], 5n, 1n, false);
    expect(dmaFenceIsArray(array)).toBe(true);
    lock(resv);
    dmaResvAddFence(resv, array, 'read');
    expect(w.warnings.map((x) => `${x.func}: ${x.message}`)).toEqual([
      'dma_resv_reserve_fences: WARN_ON(debug_locks && !lockdep_is_held(&obj->lock.base))',
      'dma_resv_add_fence: WARN_ON(debug_locks && !lockdep_is_held(&obj->lock.base))',
      'dma_resv_add_fence: WARN_ON(dma_fence_is_container(fence))',
    ]);
  });

  it('a lock held by another thread does not count as held', () => {
    const w = createDmaBufWorld();
    const resv = dmaResvInit(w);
    kthreadRun(
      w,
      'holder',
      (function* () {
        yield* dmaResvLock(resv, null);
        yield sleep(100);
        dmaResvUnlock(resv);
      })(),
    );
    w.engine.schedule(50, () => void dmaResvReserveFences(resv, 1));
    w.engine.run();
    expect(w.warnings.map((x) => x.func)).toEqual(['dma_resv_reserve_fences']);
  });
});

describe('queries', () => {
  it('wait_timeout waits for the fences of the asked usage only, in virtual time', () => {
    const w = createDmaBufWorld();
    const resv = dmaResvInit(w);
    lock(resv);
    dmaResvReserveFences(resv, 2);
    const [writer, reader] = [allocFence(w, 1n, 1n), allocFence(w, 2n, 1n)];
    dmaResvAddFence(resv, writer, 'write');
    dmaResvAddFence(resv, reader, 'read');
    dmaResvUnlock(resv);
    w.engine.schedule(100, () => void dmaFenceSignal(writer));
    w.engine.schedule(300, () => void dmaFenceSignal(reader));
    const out: Record<string, [KResult<number>, number]> = {};
    for (const u of ['write', 'read'] as const) {
      kthreadRun(
        w,
        u,
        (function* () {
          const r = yield* dmaResvWaitTimeout(resv, u, true, 1000);
          out[u] = [r, w.engine.nowNs];
        })(),
      );
    }
    kthreadRun(
      w,
      'short',
      (function* () {
        out.short = [yield* dmaResvWaitTimeout(resv, 'bookkeep', false, 50), w.engine.nowNs];
      })(),
    );
    w.engine.run();
    expect(out).toEqual({
      write: [{ ok: true, value: 900 }, 100],
      read: [{ ok: true, value: 700 }, 300],
      short: [{ ok: true, value: 0 }, 50],
    });
    expect(runNonBlocking(dmaResvWaitTimeout(resv, 'bookkeep', false, 0))).toEqual({ ok: true, value: 1 });
  });

  it('get_fences starts over when a reserve replaces the list mid-walk', () => {
    const w = createDmaBufWorld();
    const resv = dmaResvInit(w);
    lock(resv);
    dmaResvReserveFences(resv, 2);
    const [a, b, c] = [allocFence(w, 1n, 1n), allocFence(w, 2n, 1n), allocFence(w, 3n, 1n)];
    dmaResvAddFence(resv, a, 'read');
    dmaResvAddFence(resv, b, 'read');
    const cursor = dmaResvIterBegin(resv, 'read');
    const seen: [DmaFence, boolean][] = [];
    for (const f of dmaResvForEachFenceUnlocked(cursor)) {
      seen.push([f, dmaResvIterIsRestarted(cursor)]);
      if (seen.length === 1) {
        dmaResvReserveFences(resv, 10); // a new list
        dmaResvAddFence(resv, c, 'read');
      }
    }
    dmaResvIterEnd(cursor);
    expect(seen).toEqual([
      [a, true],
      [a, true],
      [b, false],
      [c, false],
    ]);
    expect([a, b, c].map((f) => f.refcount)).toEqual([2, 2, 2]);
  });

  it('get_singleton gives null, the fence, or an array; copy_fences copies the unsignaled ones', () => {
    const w = createDmaBufWorld();
    const src = dmaResvInit(w);
    expect(dmaResvGetSingleton(src, 'bookkeep')).toEqual({ ok: true, value: null });
    lock(src);
    dmaResvReserveFences(src, 3);
    const [a, b, s] = [allocFence(w, 1n, 1n), allocFence(w, 2n, 1n), allocFence(w, 3n, 1n)];
    dmaResvAddFence(src, a, 'write');
    expect(dmaResvGetSingleton(src, 'bookkeep')).toEqual({ ok: true, value: a });
    dmaResvAddFence(src, b, 'bookkeep');
    dmaResvAddFence(src, s, 'read');
    dmaFenceSignal(s);
    const single = dmaResvGetSingleton(src, 'bookkeep');
    expect(single.ok && dmaFenceIsArray(single.value)).toBe(true);
    const dst = dmaResvInit(w);
    lock(dst);
    expect(dmaResvCopyFences(dst, src).ok).toBe(true);
    expect(dst.fences!.table.map((e) => [e.fence, e.usage])).toEqual([
      [a, 'write'],
      [b, 'bookkeep'],
    ]);
    dmaResvFini(dst);
    expect(a.refcount).toBe(4); // own + src + the first singleton + the array of the second
  });
});
