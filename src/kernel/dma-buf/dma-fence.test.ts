// The dma_fence selftests (drivers/dma-buf/st-dma-fence.c, KUnit suite "dma-buf-fence"), retold for the
// model and run against both kernel profiles.

import { describe, expect, it } from 'vitest';
import type { KResult } from '../errno.js';
import {
  type DmaFence,
  dmaFenceAddCallback,
  dmaFenceCheckAndSignal,
  dmaFenceEnableSignaling,
  dmaFenceGet,
  dmaFenceGetRcu,
  dmaFenceGetStatus,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceRemoveCallback,
  dmaFenceSetError,
  dmaFenceSignal,
  dmaFenceTestSignaledFlag,
  newDmaFenceCb,
} from './dma-fence.js';
import { dmaFenceGetStub } from './dma-fence-stub.js';
import { dmaFenceWait, dmaFenceWaitTimeout } from './dma-fence-wait.js';
import { mockFence } from './mock-fence.js';
import { kthreadRun, runNonBlocking } from './sched.js';
import { createDmaBufWorld, type DmaBufProfile, type DmaBufWorld } from './world.js';

const PROFILES: readonly DmaBufProfile[] = ['6.1', 'newest'];
const JIFFY_NS = 4_000_000; // HZ=250
const HZ_NS = 1_000_000_000;

/** A callback that records that it ran (st-dma-fence's simple_cb). */
function simpleCb(): { cb: ReturnType<typeof newDmaFenceCb>; seen: () => boolean; func: () => void } {
  let seen = false;
  return {
    cb: newDmaFenceCb(),
    seen: () => seen,
    func: () => {
      seen = true;
    },
  };
}

describe.each(PROFILES)('st-dma-fence on %s', (profile) => {
  const world = (): DmaBufWorld => createDmaBufWorld({ profile });

  it('sanitycheck: create, enable signaling, signal, put', () => {
    const w = world();
    const f = mockFence(w);
    dmaFenceEnableSignaling(f);
    dmaFenceSignal(f);
    dmaFencePut(f);
    expect(f.freed).toBe(true);
    expect(w.warnings).toEqual([]);
  });

  it('signaling: pending at creation, signals once, reports the signal', () => {
    const w = world();
    const f = mockFence(w);
    dmaFenceEnableSignaling(f);
    expect(dmaFenceIsSignaled(f)).toBe(false);
    if (profile === '6.1') {
      expect(dmaFenceSignal(f)).toEqual({ ok: true, value: undefined });
      expect(dmaFenceSignal(f)).toMatchObject({ ok: false, errno: 'EINVAL' });
      expect(f.ops).not.toBeNull();
    } else {
      expect(dmaFenceCheckAndSignal(f)).toBe(false);
      expect(dmaFenceCheckAndSignal(f)).toBe(true);
      expect(dmaFenceSignal(f)).toBeUndefined();
      expect(f.ops).toBeNull(); // "Fence ops not cleared on signal"
    }
    expect(dmaFenceIsSignaled(f)).toBe(true);
    expect(dmaFenceTestSignaledFlag(f)).toBe(true);
    dmaFencePut(f);
  });

  it('add_callback: a callback added before the signal runs on signal', () => {
    const w = world();
    const f = mockFence(w);
    const s = simpleCb();
    expect(dmaFenceAddCallback(f, s.cb, s.func).ok).toBe(true);
    expect(s.seen()).toBe(false);
    dmaFenceSignal(f);
    expect(s.seen()).toBe(true);
    dmaFencePut(f);
  });

  it('late_add_callback: adding after the signal fails with ENOENT and never runs', () => {
    const w = world();
    const f = mockFence(w);
    dmaFenceEnableSignaling(f);
    dmaFenceSignal(f);
    const s = simpleCb();
    expect(dmaFenceAddCallback(f, s.cb, s.func)).toMatchObject({ ok: false, errno: 'ENOENT' });
    dmaFenceSignal(f);
    expect(s.seen()).toBe(false);
    dmaFencePut(f);
  });

  it('rm_callback: a removed callback does not run', () => {
    const w = world();
    const f = mockFence(w);
    const s = simpleCb();
    expect(dmaFenceAddCallback(f, s.cb, s.func).ok).toBe(true);
    expect(dmaFenceRemoveCallback(f, s.cb)).toBe(true);
    dmaFenceSignal(f);
    expect(s.seen()).toBe(false);
    dmaFencePut(f);
  });

  it('late_rm_callback: removing a callback that already ran returns false', () => {
    const w = world();
    const f = mockFence(w);
    const s = simpleCb();
    expect(dmaFenceAddCallback(f, s.cb, s.func).ok).toBe(true);
    dmaFenceSignal(f);
    expect(s.seen()).toBe(true);
    expect(dmaFenceRemoveCallback(f, s.cb)).toBe(false);
    dmaFencePut(f);
  });

  it('status: 0 while pending, 1 once signaled', () => {
    const w = world();
    const f = mockFence(w);
    dmaFenceEnableSignaling(f);
    expect(dmaFenceGetStatus(f)).toEqual({ ok: true, value: 0 });
    dmaFenceSignal(f);
    expect(dmaFenceGetStatus(f)).toEqual({ ok: true, value: 1 });
    dmaFencePut(f);
  });

  it('error: an error set before the signal shows only after it', () => {
    const w = world();
    const f = mockFence(w);
    dmaFenceEnableSignaling(f);
    dmaFenceSetError(f, 'EIO');
    expect(dmaFenceGetStatus(f)).toEqual({ ok: true, value: 0 });
    dmaFenceSignal(f);
    expect(dmaFenceGetStatus(f)).toMatchObject({ ok: false, errno: 'EIO' });
    expect(w.warnings).toEqual([]);
    dmaFencePut(f);
  });

  it('wait: a zero-timeout wait is 0 before the signal and 1 after', () => {
    const w = world();
    const f = mockFence(w);
    dmaFenceEnableSignaling(f);
    expect(runNonBlocking(dmaFenceWaitTimeout(f, false, 0))).toEqual({ ok: true, value: 0 });
    dmaFenceSignal(f);
    expect(runNonBlocking(dmaFenceWaitTimeout(f, false, 0))).toEqual({ ok: true, value: 1 });
    dmaFencePut(f);
  });

  it('wait_timeout: one jiffy times out; a timer signaling after one jiffy ends a HZ wait early', () => {
    const w = world();
    const f = mockFence(w);
    dmaFenceEnableSignaling(f);
    const results: KResult<number>[] = [];
    const stamps: number[] = [];
    kthreadRun(
      w,
      'waiter',
      (function* () {
        results.push(yield* dmaFenceWaitTimeout(f, false, JIFFY_NS));
        stamps.push(w.engine.nowNs);
        w.engine.schedule(JIFFY_NS, () => void dmaFenceSignal(f)); // mod_timer(jiffies + 1)
        results.push(yield* dmaFenceWaitTimeout(f, false, HZ_NS));
        stamps.push(w.engine.nowNs);
      })(),
    );
    w.engine.run();
    expect(results[0]).toEqual({ ok: true, value: 0 });
    expect(stamps[0]).toBe(JIFFY_NS);
    expect(results[1]).toEqual({ ok: true, value: HZ_NS - JIFFY_NS });
    expect(stamps[1]).toBe(2 * JIFFY_NS);
    expect(f.timestampNs).toBe(2 * JIFFY_NS);
    dmaFencePut(f);
  });

  it('stub: 64 references to the stub fence are all signaled', () => {
    const w = world();
    const stubs: DmaFence[] = [];
    for (let i = 0; i < 64; i++) {
      const s = dmaFenceGetStub(w);
      expect(dmaFenceIsSignaled(s)).toBe(true);
      stubs.push(s);
    }
    expect(new Set(stubs).size).toBe(1);
    expect(stubs[0]!.refcount).toBe(65);
    for (const s of stubs) dmaFencePut(s);
    expect(stubs[0]!.refcount).toBe(1);
    expect(stubs[0]!.freed).toBe(false);
  });
});

/**
 * race_signal_callback: two threads each publish a fence, pick up the other's, add a callback to it and
 * signal their own, either before or after adding the callback. Every callback must be observed. The
 * kernel needs two CPUs for the race; here the interleavings come from seeded random sleeps.
 */
function raceSignalCallback(
  profile: DmaBufProfile,
  seed: number,
  before: boolean,
): { passes: number[]; misses: number } {
  const w = createDmaBufWorld({ profile, seed });
  const slots: (DmaFence | null)[] = [null, null];
  const passes = [0, 0];
  let misses = 0;
  const PASSES = 40;
  const nap = () => ({ kind: 'sleep' as const, ns: 1 + w.engine.prng.below(50) });
  function* thread(id: number) {
    while (passes[id]! < PASSES) {
      const f1 = mockFence(w);
      dmaFenceEnableSignaling(f1);
      slots[id] = f1;
      yield nap();
      let f2: DmaFence | null = null;
      for (let spins = 0; f2 === null && spins < 10_000; spins++) {
        const other = slots[1 - id];
        f2 = other ? dmaFenceGetRcu(other) : null;
        if (f2 === null) {
          if (passes[1 - id]! >= PASSES) break; // the other thread has stopped (kthread_should_stop)
          yield nap();
        }
      }
      if (before) dmaFenceSignal(f1);
      yield nap();
      let seen = false;
      const markSeen = (): void => {
        seen = true;
      };
      if (f2 === null || !dmaFenceAddCallback(f2, newDmaFenceCb(), markSeen).ok) {
        misses++;
        seen = true;
      }
      if (!before) dmaFenceSignal(f1);
      yield nap();
      if (!seen && f2) {
        const r = yield* dmaFenceWait(f2, false);
        expect(r.ok).toBe(true);
      }
      expect(seen, `callback not seen on thread ${id}, pass ${passes[id]}`).toBe(true);
      dmaFencePut(f2);
      slots[id] = null;
      dmaFencePut(f1);
      passes[id]!++;
    }
  }
  kthreadRun(w, 'dma-fence:0', thread(0));
  kthreadRun(w, 'dma-fence:1', thread(1));
  w.engine.run();
  expect(w.warnings).toEqual([]);
  return { passes, misses };
}

describe.each(PROFILES)('race_signal_callback on %s', (profile) => {
  it.each([1, 2, 3, 42, 1234])('seed %i: every callback is observed, signaling before and after', (seed) => {
    for (const before of [false, true]) {
      const r = raceSignalCallback(profile, seed, before);
      expect(r.passes).toEqual([40, 40]);
      expect(r.misses).toBeLessThan(80);
    }
  });
});

describe('waiting', () => {
  it('a waiter wakes when another thread signals', () => {
    const w = createDmaBufWorld();
    const f = mockFence(w);
    const out: KResult<number>[] = [];
    kthreadRun(
      w,
      'waiter',
      (function* () {
        out.push(yield* dmaFenceWaitTimeout(f, true, 10_000));
      })(),
    );
    w.engine.schedule(2_500, () => void dmaFenceSignal(dmaFenceGet(f)));
    w.engine.run();
    expect(out).toEqual([{ ok: true, value: 7_500 }]);
    expect(f.refcount).toBe(2);
  });
});
