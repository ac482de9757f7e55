// dma_fence rules beyond the selftests: context numbering, seqno order, release with pending callbacks,
// WARN reports, enable_signaling and signaled ops, interruptible waits, names and stubs per profile.

import { describe, expect, it } from 'vitest';
import type { KResult } from '../errno.js';
import {
  __dmaFenceIsLater,
  DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT,
  type DmaFenceOps,
  dmaFenceAddCallback,
  dmaFenceContextAlloc,
  dmaFenceDriverName,
  dmaFenceGet,
  dmaFenceInit,
  dmaFenceInit64,
  dmaFenceIsLater,
  dmaFenceIsLaterOrSame,
  dmaFenceIsSignaled,
  dmaFenceLater,
  dmaFencePut,
  dmaFenceSetDeadline,
  dmaFenceSetError,
  dmaFenceSignal,
  dmaFenceTimelineName,
  newDmaFenceCb,
} from './dma-fence.js';
import { dmaFenceAllocatePrivateStub } from './dma-fence-stub.js';
import { dmaFenceDefaultWait, dmaFenceWait, dmaFenceWaitTimeout } from './dma-fence-wait.js';
import { mockFence } from './mock-fence.js';
import { kthreadRun, runNonBlocking, sendSig } from './sched.js';
import { createDmaBufWorld } from './world.js';

describe('fence contexts and seqno order', () => {
  it('allocates contexts from 1, num at a time, and WARNs for num 0', () => {
    const w = createDmaBufWorld();
    expect(dmaFenceContextAlloc(w, 1)).toBe(1n);
    expect(dmaFenceContextAlloc(w, 3)).toBe(2n);
    expect(dmaFenceContextAlloc(w, 1)).toBe(5n);
    expect(w.warnings).toEqual([]);
    expect(dmaFenceContextAlloc(w, 0)).toBe(6n);
    expect(w.warnings).toEqual([{ func: 'dma_fence_context_alloc', message: 'WARN_ON(!num)' }]);
  });

  it('compares 32-bit seqnos with wrap-around and 64-bit ones plainly', () => {
    const w = createDmaBufWorld();
    const f32 = mockFence(w, 1n, 0n);
    const f64 = dmaFenceInit64(w, f32.ops!, 1n, 0n);
    expect(__dmaFenceIsLater(f32, 1n, 0xffffffffn)).toBe(true);
    expect(__dmaFenceIsLater(f32, 0xffffffffn, 1n)).toBe(false);
    expect(__dmaFenceIsLater(f32, 0x80000000n, 0n)).toBe(false); // (int)0x80000000 < 0
    expect(__dmaFenceIsLater(f32, 0x7fffffffn, 0n)).toBe(true);
    expect(__dmaFenceIsLater(f32, 0x1_00000002n, 1n)).toBe(true); // only the low 32 bits count
    expect(__dmaFenceIsLater(f64, 1n, 0xffffffffn)).toBe(false);
    expect(__dmaFenceIsLater(f64, 0x1_00000000n, 0xffffffffn)).toBe(true);
    const ops64: DmaFenceOps = { ...f32.ops!, use_64bit_seqno: true };
    expect(__dmaFenceIsLater(dmaFenceInit(w, ops64, 1n, 0n), 1n, 0xffffffffn)).toBe(false);
  });

  it('is_later WARNs across contexts; later() skips signaled fences', () => {
    const w = createDmaBufWorld();
    const a = mockFence(w, 7n, 1n);
    const b = mockFence(w, 7n, 2n);
    expect(dmaFenceIsLater(b, a)).toBe(true);
    expect(dmaFenceIsLaterOrSame(a, a)).toBe(true);
    expect(dmaFenceIsLaterOrSame(a, b)).toBe(false);
    expect(dmaFenceLater(a, b)).toBe(b);
    dmaFenceSignal(b);
    expect(dmaFenceLater(a, b)).toBeNull();
    expect(w.warnings).toEqual([]);
    expect(dmaFenceIsLater(a, mockFence(w, 8n, 0n))).toBe(false);
    expect(w.warnings).toEqual([
      { func: 'dma_fence_is_later', message: 'WARN_ON(f1->context != f2->context)' },
    ]);
  });
});

describe('release', () => {
  it.each(['6.1', 'newest'] as const)(
    '%s: the last put of a fence with pending callbacks WARNs, fails it with EDEADLK and signals',
    (profile) => {
      const w = createDmaBufWorld({ profile });
      const f = mockFence(w, 0x2an, 0x10n);
      const errors: (string | undefined)[] = [];
      expect(dmaFenceAddCallback(f, newDmaFenceCb(), (fence) => errors.push(fence.error)).ok).toBe(true);
      dmaFencePut(f);
      expect(w.warnings).toEqual([
        { func: 'dma_fence_release', message: 'Fence mock:mock:2a:10 released with pending signals!' },
      ]);
      expect(errors).toEqual(['EDEADLK']);
      expect(f.freed).toBe(true);
      expect(() => dmaFenceGet(f)).toThrow(/use after free/);
    },
  );

  it('calls ops->release instead of freeing, and does not WARN for signaled fences', () => {
    const w = createDmaBufWorld();
    const released: number[] = [];
    const ops: DmaFenceOps = { ...mockFence(w).ops!, release: (f) => void released.push(f.id) };
    const f = dmaFenceInit(w, ops, 1n, 1n);
    dmaFenceGet(f);
    dmaFenceSignal(f);
    dmaFencePut(f);
    expect(released).toEqual([]);
    dmaFencePut(f);
    expect(released).toEqual([f.id]);
    expect(f.ops).toBe(ops); // a fence with a release op keeps its ops after signaling
    expect(w.warnings).toEqual([]);
  });
});

describe('signaling rules', () => {
  it('enable_signaling returning false signals at once; add_callback then reports ENOENT', () => {
    const w = createDmaBufWorld();
    const ops: DmaFenceOps = { ...mockFence(w).ops!, enable_signaling: () => false };
    const f = dmaFenceInit(w, ops, 1n, 1n);
    expect(dmaFenceAddCallback(f, newDmaFenceCb(), () => {})).toMatchObject({ ok: false, errno: 'ENOENT' });
    expect(dmaFenceIsSignaled(f)).toBe(true);
    expect(f.flags & (1 << DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT)).not.toBe(0);
  });

  it('ops->signaled is consulted by is_signaled, which then signals the fence', () => {
    const w = createDmaBufWorld();
    let done = false;
    const ops: DmaFenceOps = { ...mockFence(w).ops!, signaled: () => done };
    const f = dmaFenceInit(w, ops, 1n, 1n);
    let ran = false;
    dmaFenceAddCallback(f, newDmaFenceCb(), () => {
      ran = true;
    });
    expect(dmaFenceIsSignaled(f)).toBe(false);
    done = true;
    expect(dmaFenceIsSignaled(f)).toBe(true);
    expect(ran).toBe(true);
  });

  it('set_error after the signal WARNs (and still stores the error)', () => {
    const w = createDmaBufWorld();
    const f = mockFence(w);
    dmaFenceSignal(f);
    dmaFenceSetError(f, 'EIO');
    expect(f.error).toBe('EIO');
    expect(w.warnings[0]?.func).toBe('dma_fence_set_error');
  });

  it('stamps the signal with virtual time', () => {
    const w = createDmaBufWorld();
    const f = mockFence(w);
    w.engine.schedule(1234, () => void dmaFenceSignal(f));
    w.engine.run();
    expect(f.timestampNs).toBe(1234);
  });

  it('names: 6.1 asks the ops, newest answers detached names once signaled', () => {
    for (const profile of ['6.1', 'newest'] as const) {
      const w = createDmaBufWorld({ profile });
      const f = mockFence(w);
      expect([dmaFenceDriverName(f), dmaFenceTimelineName(f)]).toEqual(['mock', 'mock']);
      dmaFenceSignal(f);
      const names = [dmaFenceDriverName(f), dmaFenceTimelineName(f)];
      expect(names).toEqual(profile === '6.1' ? ['mock', 'mock'] : ['detached-driver', 'signaled-timeline']);
    }
  });

  it('set_deadline reaches ops->set_deadline only while pending', () => {
    const w = createDmaBufWorld();
    const seen: number[] = [];
    const ops: DmaFenceOps = { ...mockFence(w).ops!, set_deadline: (_f, d) => void seen.push(d) };
    const f = dmaFenceInit(w, ops, 1n, 1n);
    dmaFenceSetDeadline(f, 500);
    dmaFenceSignal(f);
    dmaFenceSetDeadline(f, 900);
    expect(seen).toEqual([500]);
  });

  it('private stubs: 6.1 leaves ENABLE_SIGNAL clear and ignores the timestamp; newest sets both', () => {
    const old = createDmaBufWorld({ profile: '6.1' });
    old.engine.schedule(50, () => {});
    old.engine.run();
    const a = dmaFenceAllocatePrivateStub(old, 7);
    expect(a.flags & (1 << DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT)).toBe(0);
    expect(a.timestampNs).toBe(50);
    const neu = createDmaBufWorld({ profile: 'newest' });
    const b = dmaFenceAllocatePrivateStub(neu, 7);
    expect(b.flags & (1 << DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT)).not.toBe(0);
    expect(b.timestampNs).toBe(7);
    expect(dmaFenceIsSignaled(a) && dmaFenceIsSignaled(b)).toBe(true);
  });
});

describe('waits', () => {
  it('a negative timeout WARNs and returns EINVAL', () => {
    const w = createDmaBufWorld();
    const r = runNonBlocking(dmaFenceWaitTimeout(mockFence(w), false, -1));
    expect(r).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(w.warnings).toEqual([{ func: 'dma_fence_wait_timeout', message: 'WARN_ON(timeout < 0)' }]);
  });

  it('a signal interrupts an interruptible wait with ERESTARTSYS but not an uninterruptible one', () => {
    const w = createDmaBufWorld();
    const f = mockFence(w);
    const out: Record<string, KResult<number>> = {};
    const intr = kthreadRun(
      w,
      'intr',
      (function* () {
        out.intr = yield* dmaFenceWaitTimeout(f, true, 1_000_000);
      })(),
    );
    const plain = kthreadRun(
      w,
      'plain',
      (function* () {
        out.plain = yield* dmaFenceWaitTimeout(f, false, 1_000_000);
      })(),
    );
    w.engine.schedule(100, () => {
      sendSig(intr.kthread);
      sendSig(plain.kthread);
    });
    w.engine.schedule(300, () => void dmaFenceSignal(f));
    w.engine.run();
    expect(out.intr).toMatchObject({ ok: false, errno: 'ERESTARTSYS' });
    expect(out.plain).toEqual({ ok: true, value: 1_000_000 - 300 });
    expect(f.cbList).toEqual([]);
  });

  it('an interruptible wait with a signal already pending returns at once', () => {
    const w = createDmaBufWorld();
    const f = mockFence(w);
    let r: KResult<0> | undefined;
    const t = kthreadRun(
      w,
      't',
      (function* () {
        r = yield* dmaFenceWait(f, true);
      })(),
    );
    sendSig(t.kthread);
    w.engine.run();
    expect(r).toMatchObject({ ok: false, errno: 'ERESTARTSYS' });
    expect(w.engine.nowNs).toBe(0);
  });

  it('uses ops->wait when the fence has one', () => {
    const w = createDmaBufWorld();
    const ops: DmaFenceOps = {
      ...mockFence(w).ops!,
      // A driver wait that peeks with the default wait and reports one more than asked.
      *wait(f, intr, timeoutNs) {
        const peek = yield* dmaFenceDefaultWait(f, intr, 0);
        return peek.ok ? { ok: true, value: timeoutNs + 1 } : peek;
      },
    };
    expect(runNonBlocking(dmaFenceWaitTimeout(dmaFenceInit(w, ops, 1n, 1n), false, 5))).toEqual({
      ok: true,
      value: 6,
    });
  });

  it('sleeping outside a kthread is a bug', () => {
    const w = createDmaBufWorld();
    expect(() => runNonBlocking(dmaFenceWaitTimeout(mockFence(w), false, 10))).toThrow(
      /not a task|tried to sleep/,
    );
  });
});
