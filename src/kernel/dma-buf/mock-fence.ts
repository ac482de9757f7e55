// The selftests' mock fences (drivers/dma-buf/st-dma-fence*.c): software fences named "mock" that only
// signal when told to. Tests and simulations use them as the fences of a pretend driver.

import { type DmaFence, type DmaFenceOps, dmaFenceContextAlloc, dmaFenceInit } from './dma-fence.js';
import type { DmaBufWorld } from './world.js';

export const mockFenceOps: DmaFenceOps = {
  get_driver_name: () => 'mock',
  get_timeline_name: () => 'mock',
};

/** A mock fence on `context`/`seqno` (the st-dma-fence default is context 0, seqno 0). */
export const mockFence = (world: DmaBufWorld, context = 0n, seqno = 0n): DmaFence =>
  dmaFenceInit(world, mockFenceOps, context, seqno);

/** A mock fence on a fresh context with seqno 1 (st-dma-fence-unwrap's mock_fence()). */
export const mockFenceNewContext = (world: DmaBufWorld): DmaFence =>
  dmaFenceInit(world, mockFenceOps, dmaFenceContextAlloc(world, 1), 1n);
