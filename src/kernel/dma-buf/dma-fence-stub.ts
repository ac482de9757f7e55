// The stub fences: an always-signaled fence shared by everyone, and private signaled fences with a given
// timestamp (dma_fence_get_stub() and dma_fence_allocate_private_stub() in drivers/dma-buf/dma-fence.c).
// Both live on context 0, seqno 0, with the driver and timeline name "stub".

import {
  DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT,
  type DmaFence,
  type DmaFenceOps,
  dmaFenceGet,
  dmaFenceInit,
  dmaFenceSignalTimestamp,
} from './dma-fence.js';
import type { DmaBufWorld } from './world.js';

const dmaFenceStubOps: DmaFenceOps = {
  get_driver_name: () => 'stub',
  get_timeline_name: () => 'stub',
};

/** dma_fence_get_stub(): a new reference to the world's signaled stub fence (created on first use). */
export function dmaFenceGetStub(world: DmaBufWorld): DmaFence {
  if (world.stub === null) {
    const stub = dmaFenceInit(world, dmaFenceStubOps, 0n, 0n);
    stub.flags |= 1 << DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT;
    dmaFenceSignalTimestamp(stub, world.engine.nowNs);
    world.stub = stub;
  }
  return dmaFenceGet(world.stub);
}

/**
 * dma_fence_allocate_private_stub(timestamp): a new fence, already signaled at `timestampNs` (6.1 takes no
 * timestamp and uses the current time). 6.1 sets ENABLE_SIGNAL on the shared stub instead of the new
 * fence (fixed in 6.3 by "dma-buf: actually set signaling bit for private stub fences"); the model keeps that.
 */
export function dmaFenceAllocatePrivateStub(world: DmaBufWorld, timestampNs = world.engine.nowNs): DmaFence {
  const f = dmaFenceInit(world, dmaFenceStubOps, 0n, 0n);
  const fixed = world.facts.privateStubTimestamp;
  if (fixed) f.flags |= 1 << DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT;
  dmaFenceSignalTimestamp(f, fixed ? timestampNs : world.engine.nowNs);
  return f;
}
