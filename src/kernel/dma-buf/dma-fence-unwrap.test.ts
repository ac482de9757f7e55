// The dma_fence_unwrap selftests (drivers/dma-buf/st-dma-fence-unwrap.c; KUnit suite
// "dma-buf-fence-unwrap"), retold: iteration yields exactly the leaf fences of arrays and chains, and merge
// drops signaled fences, keeps the latest fence per context and orders the result by context.

import { describe, expect, it } from 'vitest';
import {
  type DmaFence,
  dmaFenceContextAlloc,
  dmaFenceEnableSwSignaling,
  dmaFenceGet,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceSignal,
} from './dma-fence.js';
import { dmaFenceArrayCreate, dmaFenceIsArray } from './dma-fence-array.js';
import { dmaFenceChainInit } from './dma-fence-chain.js';
import { dmaFenceGetStub } from './dma-fence-stub.js';
import { dmaFenceDedupArray, dmaFenceUnwrapForEach, dmaFenceUnwrapMerge } from './dma-fence-unwrap.js';
import { mockFence, mockFenceNewContext } from './mock-fence.js';
import { createDmaBufWorld, type DmaBufProfile, type DmaBufWorld } from './world.js';

/** mock_array(): an array on a fresh context, seqno 1, owning the given references. */
const mockArray = (w: DmaBufWorld, ...fences: DmaFence[]): DmaFence =>
  dmaFenceArrayCreate(w, fences, dmaFenceContextAlloc(w, 1), 1n, false);

/** mock_chain(): a chain node with seqno 1 owning the given references. */
const mockChain = (w: DmaBufWorld, prev: DmaFence | null, fence: DmaFence): DmaFence =>
  dmaFenceChainInit(w, prev, fence, 1n);

/** A fresh-context mock fence with signaling enabled (the selftests enable it on every mock). */
function enabled(w: DmaBufWorld, context?: bigint, seqno?: bigint): DmaFence {
  const f = context === undefined ? mockFenceNewContext(w) : mockFence(w, context, seqno ?? 1n);
  dmaFenceEnableSwSignaling(f);
  return f;
}

const leaves = (head: DmaFence): DmaFence[] => [...dmaFenceUnwrapForEach(head)];

describe.each(['6.1', 'newest'] as DmaBufProfile[])('st-dma-fence-unwrap on %s', (profile) => {
  const world = (): DmaBufWorld => createDmaBufWorld({ profile });

  it('sanitycheck: a chain over an array over a fence', () => {
    const w = world();
    const f = enabled(w);
    const chain = mockChain(w, null, mockArray(w, f));
    dmaFencePut(chain);
    expect(f.freed && chain.freed).toBe(true);
  });

  it('unwrap_array: both fences of an array, nothing else', () => {
    const w = world();
    const [f1, f2] = [enabled(w), enabled(w)];
    const array = mockArray(w, f1, f2);
    expect(leaves(array)).toEqual([f1, f2]);
    dmaFencePut(array);
  });

  it('unwrap_chain: both fences of a two-link chain', () => {
    const w = world();
    const [f1, f2] = [enabled(w), enabled(w)];
    const chain = mockChain(w, f1, f2);
    expect(new Set(leaves(chain))).toEqual(new Set([f1, f2]));
    expect(leaves(chain)).toHaveLength(2);
    dmaFencePut(chain);
  });

  it('unwrap_chain_array: the fences of an array inside a chain', () => {
    const w = world();
    const [f1, f2] = [enabled(w), enabled(w)];
    const chain = mockChain(w, null, mockArray(w, f1, f2));
    expect(leaves(chain)).toEqual([f1, f2]);
    dmaFencePut(chain);
    expect(f1.freed && f2.freed).toBe(true);
  });

  it('unwrap_merge: two fences merge into an array of both', () => {
    const w = world();
    const [f1, f2] = [enabled(w), enabled(w)];
    const f3 = dmaFenceUnwrapMerge(w, f1, f2);
    expect(dmaFenceIsArray(f3)).toBe(true);
    expect(leaves(f3)).toEqual([f1, f2]);
    dmaFencePut(f3);
    expect(f1.refcount).toBe(1);
    dmaFencePut(f1);
    dmaFencePut(f2);
  });

  it('unwrap_merge_duplicate: a fence merged with itself is just that fence', () => {
    const w = world();
    const f1 = enabled(w);
    const f2 = dmaFenceUnwrapMerge(w, f1, f1);
    expect(leaves(f2)).toEqual([f1]);
    expect(f2).toBe(f1);
    dmaFencePut(f2);
    dmaFencePut(f1);
    expect(f1.freed).toBe(true);
  });

  it('unwrap_merge_seqno: the later fence of a context wins, ordered by context', () => {
    const w = world();
    const ctx = [dmaFenceContextAlloc(w, 1), dmaFenceContextAlloc(w, 1)];
    const f1 = enabled(w, ctx[1], 1n);
    const f2 = enabled(w, ctx[1], 2n);
    const f3 = enabled(w, ctx[0], 1n);
    const f4 = dmaFenceUnwrapMerge(w, f1, f2, f3);
    expect(leaves(f4)).toEqual([f3, f2]);
    dmaFencePut(f4);
    for (const f of [f1, f2, f3]) dmaFencePut(f);
    expect([f1, f2, f3].every((f) => f.freed)).toBe(true);
  });

  it('unwrap_merge_order: the same fences in opposite order merge into one ordered array', () => {
    const w = world();
    const [f1, f2] = [enabled(w), enabled(w)];
    const a1 = mockArray(w, f1, f2);
    const c1 = mockChain(w, null, dmaFenceGet(f1));
    const c2 = mockChain(w, c1, dmaFenceGet(f2));
    const a2 = dmaFenceUnwrapMerge(w, a1, c2);
    expect(leaves(a2)).toEqual([f1, f2]);
    dmaFencePut(a2);
    dmaFencePut(a1);
    dmaFencePut(c2);
    expect([f1, f2, a1, c1, c2, a2].every((f) => f.freed)).toBe(true);
  });

  it('unwrap_merge_complex: signaled fences are filtered and the arrays merged', () => {
    const w = world();
    const [f1, f2] = [enabled(w), enabled(w)];
    const f3 = dmaFenceUnwrapMerge(w, f1, f2);
    const f4 = mockArray(w, dmaFenceGet(f2), dmaFenceGet(f1)); // the fences in reverse
    const stub = dmaFenceGetStub(w);
    const f5 = dmaFenceUnwrapMerge(w, f3, f4, stub);
    expect(leaves(f5)).toEqual([f1, f2]);
    for (const f of [f5, f4, f3, f2, f1, stub]) dmaFencePut(f);
    expect(f1.freed && f2.freed && f5.freed).toBe(true);
  });

  it('unwrap_merge_complex_seqno: per context the later fence survives from either array', () => {
    const w = world();
    const ctx = [dmaFenceContextAlloc(w, 1), dmaFenceContextAlloc(w, 1)];
    const f1 = enabled(w, ctx[0], 2n);
    const f2 = enabled(w, ctx[1], 1n);
    const f3 = enabled(w, ctx[0], 1n);
    const f4 = enabled(w, ctx[1], 2n);
    const f5 = mockArray(w, dmaFenceGet(f1), dmaFenceGet(f2));
    const f6 = mockArray(w, dmaFenceGet(f3), dmaFenceGet(f4));
    const f7 = dmaFenceUnwrapMerge(w, f5, f6);
    expect(leaves(f7)).toEqual([f1, f4]);
    for (const f of [f7, f6, f5, f4, f3, f2, f1]) dmaFencePut(f);
    expect([f1, f2, f3, f4, f5, f6, f7].every((f) => f.freed)).toBe(true);
  });

  it('dedup_empty: deduplicating nothing leaves nothing', () => {
    expect(dmaFenceDedupArray([])).toBe(0);
  });

  it('merging only signaled fences gives a signaled stub', () => {
    const w = world();
    const f = enabled(w);
    w.engine.schedule(30, () => void dmaFenceSignal(f));
    w.engine.run();
    const m = dmaFenceUnwrapMerge(w, f);
    expect(dmaFenceIsSignaled(m)).toBe(true);
    if (profile === '6.1') expect(m).toBe(w.stub);
    else expect([m === w.stub, m.timestampNs]).toEqual([false, 30]);
  });
});
