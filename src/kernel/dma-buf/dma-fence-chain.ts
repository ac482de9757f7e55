// dma_fence_chain: a timeline built as a linked list of nodes, each wrapping one fence and pointing at the
// previous node (drivers/dma-buf/dma-fence-chain.c, include/linux/dma-fence-chain.h).
//
//   chain[2] (seqno 3) --prev--> chain[1] (seqno 2) --prev--> chain[0] (seqno 1) --prev--> null
//      |fence                       |fence                       |fence
//      f2                           f1                           f0
//
// A node is signaled once its own fence and every earlier node are. Walking the chain drops (garbage
// collects) links whose fences have signaled, so a walk from the tail may skip over nodes. Nodes on one
// timeline share a context and compare seqnos as 64-bit numbers.

import { err, type KResult, ok } from '../errno.js';
import {
  __dmaFenceIsLater,
  type DmaFence,
  type DmaFenceCb,
  type DmaFenceOps,
  dmaFenceAddCallback,
  dmaFenceContextAlloc,
  dmaFenceFree,
  dmaFenceGet,
  dmaFenceInit64,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceSetDeadline,
  dmaFenceSignal,
  newDmaFenceCb,
} from './dma-fence.js';
import { type DmaBufWorld, irqWorkQueue, warnOn } from './world.js';

export interface DmaFenceChain extends DmaFence {
  /** The previous node (or plain fence); replaced while walking as earlier links signal. */
  prev: DmaFence | null;
  /** Seqno of `prev` when this node joined its timeline (0 when it started a new one). */
  readonly prevSeqno: bigint;
  /** The fence this node wraps. */
  readonly fence: DmaFence;
  /** The callback the node arms on the first unsignaled fence of the chain. */
  readonly cb: DmaFenceCb;
}

/** dma_fence_is_chain(). */
export const dmaFenceIsChain = (f: DmaFence | null): boolean => f !== null && f.ops === dmaFenceChainOps;

/** to_dma_fence_chain(): the chain node behind a fence, or null. */
export const toDmaFenceChain = (f: DmaFence | null): DmaFenceChain | null =>
  dmaFenceIsChain(f) ? (f as DmaFenceChain) : null;

/** dma_fence_chain_contained(): the wrapped fence of a node, the fence itself otherwise. */
export function dmaFenceChainContained(f: DmaFence | null): DmaFence | null {
  const chain = toDmaFenceChain(f);
  return chain ? chain.fence : f;
}

/** dma_fence_chain_get_prev(): a reference to the previous link. */
const chainGetPrev = (chain: DmaFenceChain): DmaFence | null => (chain.prev ? dmaFenceGet(chain.prev) : null);

/**
 * dma_fence_chain_walk(): step from `fence` (whose reference is consumed) to the previous unsignaled
 * link, unlinking signaled links on the way.
 * @returns a reference to the next link to look at, or null at the end of the chain.
 */
export function dmaFenceChainWalk(fence: DmaFence): DmaFence | null {
  const chain = toDmaFenceChain(fence);
  if (!chain) {
    dmaFencePut(fence);
    return null;
  }
  let prev: DmaFence | null;
  for (;;) {
    prev = chainGetPrev(chain);
    if (prev === null) break;
    const prevChain = toDmaFenceChain(prev);
    let replacement: DmaFence | null;
    if (prevChain) {
      if (!dmaFenceIsSignaled(prevChain.fence)) break;
      replacement = chainGetPrev(prevChain);
    } else {
      if (!dmaFenceIsSignaled(prev)) break;
      replacement = null;
    }
    // cmpxchg(&chain->prev, prev, replacement): the chain's reference to prev moves to the garbage.
    if (chain.prev === prev) {
      chain.prev = replacement;
      dmaFencePut(prev);
    } else {
      dmaFencePut(replacement);
    }
    dmaFencePut(prev);
  }
  dmaFencePut(fence);
  return prev;
}

/**
 * dma_fence_chain_for_each(): the links from `head` backwards, as the walk leaves them. Each step holds a
 * reference that the next step consumes; a caller that stops early owns the reference of the last link.
 */
export function* dmaFenceChainForEach(head: DmaFence): Generator<DmaFence, void, undefined> {
  for (let iter = dmaFenceGet(head) as DmaFence | null; iter !== null; iter = dmaFenceChainWalk(iter))
    yield iter;
}

/**
 * dma_fence_chain_find_seqno(): move `pfence.fence` (a chain node, reference owned by the caller) to the
 * node that signals `seqno`: possibly an earlier node, or null when everything up to it has signaled.
 * @returns ok (also for seqno 0, which changes nothing); EINVAL if the fence is no chain node or its
 *   seqno has not reached `seqno` yet (the "future fence" case); the fence is then left unchanged.
 */
export function dmaFenceChainFindSeqno(
  pfence: { fence: DmaFence | null },
  seqno: bigint,
): KResult<undefined> {
  if (seqno === 0n) return ok(undefined);
  const chain = toDmaFenceChain(pfence.fence);
  if (!chain || chain.seqno < seqno) return err('EINVAL', `no chain node at or after seqno ${seqno}`);
  let iter: DmaFence | null = dmaFenceGet(chain);
  while (iter !== null) {
    const node = toDmaFenceChain(iter);
    if (iter.context !== chain.context || (node !== null && node.prevSeqno < seqno)) break;
    iter = dmaFenceChainWalk(iter);
  }
  pfence.fence = iter;
  dmaFencePut(chain);
  return ok(undefined);
}

/** dma_fence_chain_irq_work(): re-arm on the next unsignaled fence, or signal the node. */
function chainIrqWork(chain: DmaFenceChain): void {
  if (!chainEnableSignaling(chain)) dmaFenceSignal(chain);
  dmaFencePut(chain);
}

/** dma_fence_chain_cb(). */
function chainCb(chain: DmaFenceChain, f: DmaFence): void {
  irqWorkQueue(chain.world, () => chainIrqWork(chain));
  dmaFencePut(f);
}

/** dma_fence_chain_enable_signaling(): arm the node's callback on the first unsignaled fence. */
function chainEnableSignaling(head: DmaFenceChain): boolean {
  dmaFenceGet(head);
  for (let iter: DmaFence | null = dmaFenceGet(head); iter !== null; iter = dmaFenceChainWalk(iter)) {
    const f = dmaFenceChainContained(iter)!;
    dmaFenceGet(f);
    if (dmaFenceAddCallback(f, head.cb, (done) => chainCb(head, done)).ok) {
      dmaFencePut(iter);
      return true;
    }
    dmaFencePut(f);
  }
  dmaFencePut(head);
  return false;
}

/** dma_fence_chain_signaled(): every fence from this node backwards has signaled. */
function chainSignaled(head: DmaFenceChain): boolean {
  for (let iter: DmaFence | null = dmaFenceGet(head); iter !== null; iter = dmaFenceChainWalk(iter)) {
    if (!dmaFenceIsSignaled(dmaFenceChainContained(iter)!)) {
      dmaFencePut(iter);
      return false;
    }
  }
  return true;
}

/** dma_fence_chain_release(): unlink predecessors we hold the last reference to iteratively (no recursion). */
function chainRelease(chain: DmaFenceChain): void {
  let prev = chain.prev;
  while (prev !== null && prev.refcount <= 1) {
    const prevChain = toDmaFenceChain(prev);
    if (!prevChain) break;
    chain.prev = prevChain.prev;
    prevChain.prev = null;
    dmaFencePut(prev);
    prev = chain.prev;
  }
  dmaFencePut(prev);
  dmaFencePut(chain.fence);
  dmaFenceFree(chain);
}

function chainSetDeadline(head: DmaFenceChain, deadlineNs: number): void {
  for (let iter: DmaFence | null = dmaFenceGet(head); iter !== null; iter = dmaFenceChainWalk(iter)) {
    dmaFenceSetDeadline(dmaFenceChainContained(iter)!, deadlineNs);
  }
}

export const dmaFenceChainOps: DmaFenceOps = {
  use_64bit_seqno: true,
  get_driver_name: () => 'dma_fence_chain',
  get_timeline_name: () => 'unbound',
  enable_signaling: (f) => chainEnableSignaling(f as DmaFenceChain),
  signaled: (f) => chainSignaled(f as DmaFenceChain),
  release: (f) => chainRelease(f as DmaFenceChain),
  set_deadline: (f, d) => chainSetDeadline(f as DmaFenceChain, d),
};

/**
 * dma_fence_chain_alloc() + dma_fence_chain_init(): a node wrapping `fence` after `prev` (both references
 * move into the node). A node whose seqno is later than a chain `prev` joins prev's timeline; otherwise it
 * starts a new context and, after a chain, keeps the larger seqno. WARNs if `fence` is itself a chain.
 */
export function dmaFenceChainInit(
  world: DmaBufWorld,
  prev: DmaFence | null,
  fence: DmaFence,
  seqno: bigint,
): DmaFenceChain {
  const prevChain = toDmaFenceChain(prev);
  let context: bigint;
  let prevSeqno = 0n;
  if (prevChain && __dmaFenceIsLater(prevChain, seqno, prevChain.seqno)) {
    context = prevChain.context;
    prevSeqno = prevChain.seqno;
  } else {
    context = dmaFenceContextAlloc(world, 1);
    if (prevChain && prevChain.seqno > seqno) seqno = prevChain.seqno;
  }
  const chain: DmaFenceChain = Object.assign(dmaFenceInit64(world, dmaFenceChainOps, context, seqno), {
    prev,
    prevSeqno,
    fence,
    cb: newDmaFenceCb(),
  });
  warnOn(world, dmaFenceIsChain(fence), 'dma_fence_chain_init', 'dma_fence_is_chain(fence)');
  return chain;
}
