// The dma_fence_chain selftests (drivers/dma-buf/st-dma-fence-chain.c), retold for the model: finding
// seqnos, signaling forwards and backwards, and threads waiting on the tail while others signal. The
// kernel's multi-CPU races become seeded interleavings of kthreads.

import { describe, expect, it } from 'vitest';
import { Prng } from '../../sim/prng.js';
import { sleep } from '../../sim/task.js';
import type { KResult } from '../errno.js';
import { type DmaFence, dmaFenceGet, dmaFenceIsSignaled, dmaFencePut, dmaFenceSignal } from './dma-fence.js';
import { type DmaFenceChain, dmaFenceChainFindSeqno, dmaFenceChainInit } from './dma-fence-chain.js';
import { dmaFenceWait } from './dma-fence-wait.js';
import { mockFence } from './mock-fence.js';
import { kthreadRun } from './sched.js';
import { createDmaBufWorld, type DmaBufProfile, type DmaBufWorld } from './world.js';

const CHAIN_SZ = 4 << 10;

/** st-dma-fence-chain's mock_chain(): the node takes its own references to prev and fence. */
const mockChain = (w: DmaBufWorld, prev: DmaFence | null, fence: DmaFence, seqno: bigint): DmaFenceChain =>
  dmaFenceChainInit(w, dmaFenceGet(prev), dmaFenceGet(fence), seqno);

interface FenceChains {
  readonly fences: DmaFence[];
  readonly chains: DmaFenceChain[];
  readonly tail: DmaFenceChain;
}

const seqnoInc = (i: number): bigint => BigInt(i + 1);
const seqnoInc2 = (i: number): bigint => BigInt(2 * i + 2);

function fenceChainsInit(w: DmaBufWorld, count: number, seqnoFn = seqnoInc): FenceChains {
  const fences: DmaFence[] = [];
  const chains: DmaFenceChain[] = [];
  let tail: DmaFenceChain | null = null;
  for (let i = 0; i < count; i++) {
    fences.push(mockFence(w));
    tail = mockChain(w, tail, fences[i]!, seqnoFn(i));
    chains.push(tail);
  }
  return { fences, chains, tail: tail! };
}

/** fence_chains_fini(): signal and drop everything; every object must then be freed (no leaked reference). */
function fenceChainsFini(w: DmaBufWorld, fc: FenceChains): void {
  for (const f of fc.fences) {
    dmaFenceSignal(f);
    dmaFencePut(f);
  }
  for (const c of fc.chains) dmaFencePut(c);
  w.engine.run(); // pending irq work holds chain references
  expect(fc.fences.every((f) => f.freed)).toBe(true);
  expect(fc.chains.every((c) => c.freed)).toBe(true);
  expect(w.warnings).toEqual([]);
}

/** find_seqno from a fresh reference to `start`; the result reference is dropped like the selftest does. */
function find(start: DmaFence, seqno: bigint): { r: KResult<undefined>; fence: DmaFence | null } {
  const p = { fence: dmaFenceGet(start) as DmaFence | null };
  const r = dmaFenceChainFindSeqno(p, seqno);
  dmaFencePut(p.fence);
  return { r, fence: p.fence };
}

describe.each(['6.1', 'newest'] as DmaBufProfile[])('st-dma-fence-chain on %s', (profile) => {
  const world = (seed = 1): DmaBufWorld => createDmaBufWorld({ profile, seed });

  it('sanitycheck: a chain node over one fence', () => {
    const w = world();
    const f = mockFence(w);
    const chain = mockChain(w, null, f, 1n);
    dmaFenceSignal(f);
    dmaFencePut(f);
    expect(dmaFenceIsSignaled(chain)).toBe(true);
    dmaFencePut(chain);
    expect(chain.freed && f.freed).toBe(true);
  });

  it('find_seqno: 0 changes nothing, each seqno finds its node, future seqnos are EINVAL', () => {
    const w = world();
    const fc = fenceChainsInit(w, 64);
    const zero = find(fc.tail, 0n);
    expect(zero).toEqual({ r: { ok: true, value: undefined }, fence: fc.tail });
    for (let i = 0; i < 64; i++) {
      const byTail = find(fc.tail, BigInt(i + 1));
      expect(byTail.r.ok).toBe(true);
      expect(byTail.fence).toBe(fc.chains[i]);
      expect(find(fc.chains[i]!, BigInt(i + 1)).fence).toBe(fc.chains[i]); // finding self
      expect(find(fc.chains[i]!, BigInt(i + 2)).r).toMatchObject({ ok: false, errno: 'EINVAL' });
      const prev = find(fc.chains[i]!, BigInt(i));
      expect(prev.r.ok).toBe(true);
      if (i > 0) expect(prev.fence).toBe(fc.chains[i - 1]);
    }
    fenceChainsFini(w, fc);
  });

  it('find_signaled: with fence 1 signaled, seqno 1 resolves to its node or to nothing', () => {
    const w = world();
    const fc = fenceChainsInit(w, 2);
    dmaFenceSignal(fc.fences[0]!);
    const r = find(fc.tail, 1n);
    expect(r.r.ok).toBe(true);
    expect([fc.chains[0], null]).toContain(r.fence);
    fenceChainsFini(w, fc);
  });

  it('find_out_of_order: with only the middle fence signaled, seqno 2 must wait on node 1', () => {
    const w = world();
    const fc = fenceChainsInit(w, 3);
    dmaFenceSignal(fc.fences[1]!);
    const r = find(fc.tail, 2n);
    expect(r.r.ok).toBe(true);
    expect(r.fence).toBe(fc.chains[0]);
    fenceChainsFini(w, fc);
  });

  it('find_gap: with seqnos 2, 4, 6 ... both 2i+1 and 2i+2 resolve to node i', () => {
    const w = world();
    const fc = fenceChainsInit(w, 64, seqnoInc2);
    for (let i = 0; i < 64; i++) {
      expect(find(fc.tail, BigInt(2 * i + 1)).fence).toBe(fc.chains[i]);
      expect(find(fc.chains[i]!, BigInt(2 * i + 2)).fence).toBe(fc.chains[i]);
    }
    fenceChainsFini(w, fc);
  });

  it('signal_forward: signaling fence i signals chain i but not chain i+1', () => {
    const w = world();
    const fc = fenceChainsInit(w, 64);
    for (let i = 0; i < 64; i++) {
      dmaFenceSignal(fc.fences[i]!);
      expect(dmaFenceIsSignaled(fc.chains[i]!)).toBe(true);
      if (i + 1 < 64) expect(dmaFenceIsSignaled(fc.chains[i + 1]!)).toBe(false);
    }
    fenceChainsFini(w, fc);
  });

  it('signal_backward: no node signals before all earlier ones; in the end all have', () => {
    const w = world();
    const fc = fenceChainsInit(w, 64);
    for (let i = 63; i >= 0; i--) {
      dmaFenceSignal(fc.fences[i]!);
      if (i > 0) expect(dmaFenceIsSignaled(fc.chains[i]!)).toBe(false);
    }
    expect(fc.chains.every((c) => dmaFenceIsSignaled(c))).toBe(true);
    fenceChainsFini(w, fc);
  });

  /** wait_forward/backward/random: a thread waits on the tail while another signals every fence. */
  function waitOnTail(order: 'forward' | 'backward' | 'random', seed: number): void {
    const w = world(seed);
    const fc = fenceChainsInit(w, CHAIN_SZ);
    const idx = fc.fences.map((_, i) => i);
    if (order === 'backward') idx.reverse();
    if (order === 'random') {
      const prng = new Prng(seed);
      for (let n = idx.length - 1; n > 0; n--) {
        const s = prng.below(n + 1);
        [idx[n], idx[s]] = [idx[s]!, idx[n]!];
      }
    }
    let result: KResult<0> | undefined;
    let doneAtNs = -1;
    kthreadRun(
      w,
      'dmabuf/wait',
      (function* () {
        result = yield* dmaFenceWait(fc.tail, false);
        doneAtNs = w.engine.nowNs;
      })(),
    );
    kthreadRun(
      w,
      'signaler',
      (function* () {
        yield sleep(1); // yield_to(tsk): the waiter goes first
        for (const i of idx) {
          dmaFenceSignal(fc.fences[i]!);
          yield sleep(1);
        }
      })(),
    );
    w.engine.run();
    expect(result).toEqual({ ok: true, value: 0 });
    expect(doneAtNs).toBeGreaterThanOrEqual(CHAIN_SZ); // not before the last fence
    expect(doneAtNs).toBeLessThanOrEqual(CHAIN_SZ + 1);
    fenceChainsFini(w, fc);
  }

  it('wait_forward', () => waitOnTail('forward', 1));
  it('wait_backward', () => waitOnTail('backward', 1));
  it.each([1, 7, 99])('wait_random (seed %i)', (seed) => waitOnTail('random', seed));

  it.each([1, 2, 3])('find_race (seed %i): threads find and signal at random without errors', (seed) => {
    const w = world(seed);
    const fc = fenceChainsInit(w, CHAIN_SZ);
    const prng = w.engine.prng;
    let stop = false;
    let finds = 0;
    function* racer() {
      while (!stop) {
        const seqno = prng.below(CHAIN_SZ) + 1;
        const p = { fence: dmaFenceGet(fc.tail) as DmaFence | null };
        const r = dmaFenceChainFindSeqno(p, BigInt(seqno));
        expect(r.ok, `find_seqno(${seqno})`).toBe(true);
        finds++;
        if (p.fence && p.fence.seqno === BigInt(seqno)) {
          // We can only find ourselves if we are on the fence we were looking for.
          expect(dmaFenceChainFindSeqno(p, BigInt(seqno)).ok).toBe(true);
        }
        dmaFencePut(p.fence);
        dmaFenceSignal(fc.fences[prng.below(CHAIN_SZ - 1)]!);
        yield sleep(1 + prng.below(3));
      }
    }
    for (let i = 0; i < 4; i++) kthreadRun(w, `dmabuf/${i}`, racer());
    w.engine.schedule(500, () => {
      stop = true;
    });
    w.engine.run();
    expect(finds).toBeGreaterThan(400);
    expect(fc.fences.filter((f) => dmaFenceIsSignaled(f)).length).toBeGreaterThan(0);
    fenceChainsFini(w, fc);
  });
});

describe('dma_fence_chain_init rules', () => {
  it('joins the previous timeline only with a later seqno; otherwise a new context and the larger seqno', () => {
    const w = createDmaBufWorld();
    const [a, b, c] = [mockFence(w), mockFence(w), mockFence(w)];
    const c1 = dmaFenceChainInit(w, null, a, 5n);
    const c2 = dmaFenceChainInit(w, c1, b, 6n);
    expect(c2.context).toBe(c1.context);
    expect(c2.prevSeqno).toBe(5n);
    const c3 = dmaFenceChainInit(w, c2, c, 3n);
    expect(c3.context).not.toBe(c2.context);
    expect(c3.seqno).toBe(6n);
    expect(c3.prevSeqno).toBe(0n);
    expect(w.warnings).toEqual([]);
  });

  it('WARNs when the wrapped fence is itself a chain', () => {
    const w = createDmaBufWorld();
    const inner = dmaFenceChainInit(w, null, mockFence(w), 1n);
    dmaFenceChainInit(w, null, inner, 2n);
    expect(w.warnings).toEqual([
      { func: 'dma_fence_chain_init', message: 'WARN_ON(dma_fence_is_chain(fence))' },
    ]);
  });
});
