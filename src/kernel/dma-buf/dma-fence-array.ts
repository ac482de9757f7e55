// dma_fence_array: one fence standing for several, signaled when all of them (or, with signal_on_any, the
// first of them) have signaled (drivers/dma-buf/dma-fence-array.c).
//
// The array takes over the references of its fences. Until it signals, its error holds the PENDING_ERROR
// marker, which the first child error replaces. Child callbacks count `numPending` down; the last one
// queues irq work that signals the array. Arrays must not contain containers (arrays or chains).

import {
  DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT,
  type DmaFence,
  type DmaFenceCb,
  type DmaFenceOps,
  dmaFenceAddCallback,
  dmaFenceFree,
  dmaFenceGet,
  dmaFenceInit,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceSetDeadline,
  dmaFenceSignal,
  newDmaFenceCb,
} from './dma-fence.js';
import { dmaFenceIsChain } from './dma-fence-chain.js';
import { type DmaBufWorld, irqWorkQueue, warnOn } from './world.js';

export interface DmaFenceArray extends DmaFence {
  readonly numFences: number;
  readonly fences: readonly DmaFence[];
  numPending: number;
  /** One callback slot per child (`struct dma_fence_array_cb`). */
  readonly callbacks: readonly DmaFenceCb[];
}

/** Propagate the first child error, but only while the array has not signaled. */
function setPendingError(array: DmaFenceArray, error: DmaFence['error']): void {
  if (error !== undefined && array.errorPending) {
    array.error = error;
    array.errorPending = false;
  }
}

function clearPendingError(array: DmaFenceArray): void {
  array.errorPending = false;
}

/** irq_dma_fence_array_work(): signal the array once the last child has. */
function arrayWork(array: DmaFenceArray): void {
  clearPendingError(array);
  dmaFenceSignal(array);
  dmaFencePut(array);
}

/** dma_fence_array_cb_func(): one child has signaled. */
function arrayCbFunc(array: DmaFenceArray, child: DmaFence): void {
  setPendingError(array, child.error);
  if (--array.numPending === 0) irqWorkQueue(array.world, () => arrayWork(array));
  else dmaFencePut(array);
}

/** dma_fence_array_enable_signaling(): a callback on every child, each holding a reference on the array. */
function arrayEnableSignaling(array: DmaFenceArray): boolean {
  for (let i = 0; i < array.numFences; i++) {
    const child = array.fences[i]!;
    dmaFenceGet(array);
    const r = dmaFenceAddCallback(child, array.callbacks[i]!, (f) => arrayCbFunc(array, f));
    if (!r.ok) {
      setPendingError(array, child.error);
      dmaFencePut(array);
      if (--array.numPending === 0) {
        clearPendingError(array);
        return false;
      }
    }
  }
  return true;
}

/**
 * dma_fence_array_signaled() ("dma-buf: fix dma_fence_array_signaled v4", 6.13, in 6.1.y stable): with
 * signaling enabled trust the counter, otherwise count the signaled children.
 */
function arraySignaled(array: DmaFenceArray): boolean {
  let numPending = array.numPending;
  let signaled = false;
  if ((array.flags & (1 << DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT)) !== 0) {
    signaled = numPending <= 0;
  } else {
    for (const child of array.fences) {
      if (dmaFenceIsSignaled(child) && --numPending === 0) {
        signaled = true;
        break;
      }
    }
  }
  if (signaled) clearPendingError(array);
  return signaled;
}

function arrayRelease(array: DmaFenceArray): void {
  for (const child of array.fences) dmaFencePut(child);
  dmaFenceFree(array);
}

export const dmaFenceArrayOps: DmaFenceOps = {
  get_driver_name: () => 'dma_fence_array',
  get_timeline_name: () => 'unbound',
  enable_signaling: (f) => arrayEnableSignaling(f as DmaFenceArray),
  signaled: (f) => arraySignaled(f as DmaFenceArray),
  release: (f) => arrayRelease(f as DmaFenceArray),
  set_deadline: (f, deadlineNs) => {
    for (const child of (f as DmaFenceArray).fences) dmaFenceSetDeadline(child, deadlineNs);
  },
};

/** dma_fence_is_array(). */
export const dmaFenceIsArray = (f: DmaFence | null): boolean => f !== null && f.ops === dmaFenceArrayOps;

/** to_dma_fence_array(): the array behind a fence, or null when it is not one. */
export const toDmaFenceArray = (f: DmaFence | null): DmaFenceArray | null =>
  dmaFenceIsArray(f) ? (f as DmaFenceArray) : null;

/** dma_fence_is_container(): an array or a chain. */
export const dmaFenceIsContainer = (f: DmaFence | null): boolean => dmaFenceIsArray(f) || dmaFenceIsChain(f);

/**
 * dma_fence_array_create(): an array over `fences` (their references move into it) on `context`/`seqno`.
 * WARNs for an empty list and for every child that is itself a container.
 * @returns the array (the kernel's NULL on allocation failure is not modelled).
 */
export function dmaFenceArrayCreate(
  world: DmaBufWorld,
  fences: readonly DmaFence[],
  context: bigint,
  seqno: bigint,
  signalOnAny: boolean,
): DmaFenceArray {
  warnOn(world, fences.length === 0, 'dma_fence_array_create', '!num_fences || !fences');
  const array: DmaFenceArray = Object.assign(dmaFenceInit(world, dmaFenceArrayOps, context, seqno), {
    numFences: fences.length,
    fences: [...fences],
    numPending: signalOnAny ? 1 : fences.length,
    callbacks: fences.map(newDmaFenceCb),
  });
  array.errorPending = true;
  for (let i = fences.length - 1; i >= 0; i--) {
    warnOn(
      world,
      dmaFenceIsContainer(fences[i]!),
      'dma_fence_array_create',
      'dma_fence_is_container(fences[num_fences])',
    );
  }
  return array;
}

/** dma_fence_array_first(): the first child, the fence itself when it is not an array, null for none. */
export function dmaFenceArrayFirst(head: DmaFence | null): DmaFence | null {
  if (head === null) return null;
  const array = toDmaFenceArray(head);
  if (!array) return head;
  return array.fences[0] ?? null;
}

/** dma_fence_array_next(): child `index`, or null past the end (or when `head` is not an array). */
export function dmaFenceArrayNext(head: DmaFence | null, index: number): DmaFence | null {
  const array = toDmaFenceArray(head);
  if (!array || index >= array.numFences) return null;
  return array.fences[index] ?? null;
}

/** dma_fence_array_for_each(): the children of an array, or the fence itself. */
export function* dmaFenceArrayForEach(head: DmaFence | null): Generator<DmaFence, void, undefined> {
  for (let i = 0, f = dmaFenceArrayFirst(head); f !== null; f = dmaFenceArrayNext(head, ++i)) yield f;
}

/** dma_fence_match_context(): is the fence, or every child of the array, on `context`? */
export function dmaFenceMatchContext(fence: DmaFence, context: bigint): boolean {
  const array = toDmaFenceArray(fence);
  if (!array) return fence.context === context;
  return array.fences.every((f) => f.context === context);
}
