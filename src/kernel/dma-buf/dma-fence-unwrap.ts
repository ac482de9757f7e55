// Flattening fence containers: iterate the leaf fences inside chains of arrays, and merge several fences
// into one (drivers/dma-buf/dma-fence-unwrap.c, include/linux/dma-fence-unwrap.h).
//
// The merge keeps only unsignaled leaves, the latest one per context, sorted by context
// (dma_fence_dedup_array). Nothing left: a signaled stub; one left: that fence; more: a new array.
// 6.1 answers the all-signaled case with the shared stub (dma_fence_get_stub()); newer kernels return a
// private stub carrying the latest signal time of the inputs.

import {
  type DmaFence,
  dmaFenceContextAlloc,
  dmaFenceGet,
  dmaFenceIsLater,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceTimestamp,
} from './dma-fence.js';
import { dmaFenceArrayCreate, dmaFenceArrayFirst, dmaFenceArrayNext } from './dma-fence-array.js';
import { dmaFenceChainContained, dmaFenceChainWalk } from './dma-fence-chain.js';
import { dmaFenceAllocatePrivateStub, dmaFenceGetStub } from './dma-fence-stub.js';
import type { DmaBufWorld } from './world.js';

/** `struct dma_fence_unwrap`: where an iteration stands. */
export interface DmaFenceUnwrap {
  /** The chain link being unwrapped (holds a reference). */
  chain: DmaFence | null;
  /** The array (or plain fence) inside that link. */
  array: DmaFence | null;
  index: number;
}

export const newDmaFenceUnwrap = (): DmaFenceUnwrap => ({ chain: null, array: null, index: 0 });

function unwrapArray(cursor: DmaFenceUnwrap): DmaFence | null {
  cursor.array = dmaFenceChainContained(cursor.chain);
  cursor.index = 0;
  return dmaFenceArrayFirst(cursor.array);
}

/** dma_fence_unwrap_first(): the first leaf under `head` (takes a reference on `head` for the walk). */
export function dmaFenceUnwrapFirst(head: DmaFence, cursor: DmaFenceUnwrap): DmaFence | null {
  cursor.chain = dmaFenceGet(head);
  return unwrapArray(cursor);
}

/** dma_fence_unwrap_next(): the next leaf, or null at the end (the walk's reference is then dropped). */
export function dmaFenceUnwrapNext(cursor: DmaFenceUnwrap): DmaFence | null {
  const tmp = dmaFenceArrayNext(cursor.array, ++cursor.index);
  if (tmp) return tmp;
  cursor.chain = cursor.chain ? dmaFenceChainWalk(cursor.chain) : null;
  return unwrapArray(cursor);
}

/** dma_fence_unwrap_for_each(): the leaf fences under `head` (no references are taken on the leaves). */
export function* dmaFenceUnwrapForEach(
  head: DmaFence,
  cursor: DmaFenceUnwrap = newDmaFenceUnwrap(),
): Generator<DmaFence, void, undefined> {
  for (let f = dmaFenceUnwrapFirst(head, cursor); f !== null; f = dmaFenceUnwrapNext(cursor)) yield f;
}

/** fence_cmp(): by context, and within a context the later fence first. */
function fenceCmp(a: DmaFence, b: DmaFence): number {
  if (a.context !== b.context) return a.context < b.context ? -1 : 1;
  if (dmaFenceIsLater(b, a)) return 1;
  if (dmaFenceIsLater(a, b)) return -1;
  return 0;
}

/**
 * dma_fence_dedup_array(): sort `fences` by context and keep only the latest fence of each context,
 * dropping the references of the others; the array is shortened in place.
 * @returns the number of fences kept (0 for an empty array, as fixed in 2026).
 */
export function dmaFenceDedupArray(fences: DmaFence[]): number {
  if (fences.length === 0) return 0;
  fences.sort(fenceCmp);
  let j = 0;
  for (let i = 1; i < fences.length; i++) {
    if (fences[i]!.context === fences[j]!.context) dmaFencePut(fences[i]!);
    else fences[++j] = fences[i]!;
  }
  fences.length = j + 1;
  return fences.length;
}

/**
 * dma_fence_unwrap_merge(...fences): one fence that signals when all unsignaled leaves of the inputs
 * have. The inputs keep their references; the result is a new reference.
 * @returns a stub (everything signaled), the single remaining fence, or a new dma_fence_array on a fresh
 *   context with seqno 1.
 */
export function dmaFenceUnwrapMerge(world: DmaBufWorld, ...fences: DmaFence[]): DmaFence {
  const pending: DmaFence[] = [];
  let timestampNs = 0;
  for (const head of fences) {
    for (const leaf of dmaFenceUnwrapForEach(head)) {
      if (!dmaFenceIsSignaled(leaf)) pending.push(dmaFenceGet(leaf));
      else timestampNs = Math.max(timestampNs, dmaFenceTimestamp(leaf));
    }
  }
  const count = dmaFenceDedupArray(pending);
  if (count === 0) {
    return world.facts.mergeReturnsPrivateStub
      ? dmaFenceAllocatePrivateStub(world, timestampNs)
      : dmaFenceGetStub(world);
  }
  if (count === 1) return pending[0]!;
  return dmaFenceArrayCreate(world, pending, dmaFenceContextAlloc(world, 1), 1n, false);
}
