// dma_fence_array: signal when all (or any) children have, first child error wins, the PENDING_ERROR
// marker never leaks, children are put on release, and containers inside arrays are reported.

import { describe, expect, it } from 'vitest';
import type { KResult } from '../errno.js';
import {
  type DmaFence,
  dmaFenceAddCallback,
  dmaFenceEnableSwSignaling,
  dmaFenceGet,
  dmaFenceGetStatus,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceSetError,
  dmaFenceSignal,
  dmaFenceTestSignaledFlag,
  newDmaFenceCb,
} from './dma-fence.js';
import {
  dmaFenceArrayCreate,
  dmaFenceArrayForEach,
  dmaFenceIsContainer,
  dmaFenceMatchContext,
} from './dma-fence-array.js';
import { dmaFenceChainInit } from './dma-fence-chain.js';
import { dmaFenceWait } from './dma-fence-wait.js';
import { mockFence } from './mock-fence.js';
import { kthreadRun } from './sched.js';
import { createDmaBufWorld, type DmaBufWorld } from './world.js';

const three = (w: DmaBufWorld): DmaFence[] => [
  mockFence(w, 9n, 1n),
  mockFence(w, 9n, 2n),
  mockFence(w, 9n, 3n),
];

describe('dma_fence_array', () => {
  it('signals (through irq work) once every child has, and runs its callbacks then', () => {
    const w = createDmaBufWorld();
    const kids = three(w);
    const array = dmaFenceArrayCreate(w, kids, 100n, 1n, false);
    let ran = false;
    expect(
      dmaFenceAddCallback(array, newDmaFenceCb(), () => {
        ran = true;
      }).ok,
    ).toBe(true);
    dmaFenceSignal(kids[0]!);
    dmaFenceSignal(kids[1]!);
    w.engine.run();
    expect(dmaFenceTestSignaledFlag(array)).toBe(false);
    dmaFenceSignal(kids[2]!);
    expect(ran).toBe(false); // the last child only queues the irq work
    w.engine.run();
    expect(ran).toBe(true);
    expect(dmaFenceGetStatus(array)).toEqual({ ok: true, value: 1 });
    expect(array.errorPending).toBe(false);
  });

  it('signal_on_any signals with the first child', () => {
    const w = createDmaBufWorld();
    const kids = three(w);
    const array = dmaFenceArrayCreate(w, kids, 100n, 1n, true);
    dmaFenceEnableSwSignaling(array);
    dmaFenceSignal(kids[1]!);
    w.engine.run();
    expect(dmaFenceTestSignaledFlag(array)).toBe(true);
    dmaFenceSignal(kids[0]!);
    dmaFenceSignal(kids[2]!);
    dmaFencePut(array);
    expect(array.freed && kids.every((k) => k.freed)).toBe(true);
  });

  it('takes the first child error, even when signaling is enabled after the children failed', () => {
    const w = createDmaBufWorld();
    const kids = three(w);
    dmaFenceSetError(kids[1]!, 'ETIME');
    dmaFenceSignal(kids[1]!);
    dmaFenceSetError(kids[2]!, 'EIO');
    dmaFenceSignal(kids[2]!);
    const array = dmaFenceArrayCreate(w, kids, 100n, 1n, false);
    dmaFenceEnableSwSignaling(array);
    dmaFenceSignal(kids[0]!);
    w.engine.run();
    expect(dmaFenceGetStatus(array)).toMatchObject({ ok: false, errno: 'ETIME' });
  });

  it('reports signaled without enable_signaling once every child has (the v4 fix)', () => {
    const w = createDmaBufWorld();
    const kids = three(w);
    const array = dmaFenceArrayCreate(w, kids, 100n, 1n, false);
    for (const k of kids) dmaFenceSignal(k);
    expect(dmaFenceIsSignaled(array)).toBe(true);
    expect(dmaFenceGetStatus(array)).toEqual({ ok: true, value: 1 });
  });

  it('wakes a waiter', () => {
    const w = createDmaBufWorld();
    const kids = three(w);
    const array = dmaFenceArrayCreate(w, kids, 100n, 1n, false);
    let r: KResult<0> | undefined;
    kthreadRun(
      w,
      'waiter',
      (function* () {
        r = yield* dmaFenceWait(array, true);
      })(),
    );
    kids.forEach((k, i) => void w.engine.schedule(10 * (i + 1), () => void dmaFenceSignal(k)));
    w.engine.run();
    expect(r).toEqual({ ok: true, value: 0 });
    expect(array.timestampNs).toBe(30);
  });

  it('WARNs for an empty array and for containers inside', () => {
    const w = createDmaBufWorld();
    dmaFenceArrayCreate(w, [], 1n, 1n, false);
    const inner = dmaFenceArrayCreate(w, [mockFence(w)], 2n, 1n, false);
    const chain = dmaFenceChainInit(w, null, mockFence(w), 1n);
    expect(dmaFenceIsContainer(inner) && dmaFenceIsContainer(chain)).toBe(true);
    dmaFenceArrayCreate(w, [inner, mockFence(w), chain], 3n, 1n, false);
    expect(w.warnings.map((x) => x.message)).toEqual([
      'WARN_ON(!num_fences || !fences)',
      'WARN_ON(dma_fence_is_container(fences[num_fences]))',
      'WARN_ON(dma_fence_is_container(fences[num_fences]))',
    ]);
  });

  it('iterates its children and matches a context', () => {
    const w = createDmaBufWorld();
    const kids = three(w);
    const array = dmaFenceArrayCreate(w, kids.map(dmaFenceGet), 100n, 1n, false);
    expect([...dmaFenceArrayForEach(array)]).toEqual(kids);
    expect([...dmaFenceArrayForEach(kids[0]!)]).toEqual([kids[0]]);
    expect(dmaFenceMatchContext(array, 9n)).toBe(true);
    expect(dmaFenceMatchContext(array, 100n)).toBe(false);
    dmaFencePut(array);
    expect(kids.every((k) => k.refcount === 1)).toBe(true);
  });
});
