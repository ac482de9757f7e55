// Coherent DMA memory for a driver's rings and descriptor lists: `dma_alloc_coherent()` (kernel/dma/
// mapping.c) and `dma_pool_create()/dma_pool_alloc()/dma_pool_free()` (mm/dmapool.c), reduced to what
// the NVMe driver needs. The DMA layer of the model has no coherent allocator, so this is the smallest
// faithful one: pages from the page allocator, mapped bidirectionally for the device's lifetime with
// dma_map_phys() (dma-direct hands back the physical address; dma-iommu an IOVA, as its coherent
// path does), zeroed as dma_alloc_coherent() memory is.
//
//   pool (block size b): coherent pages carved into b-byte blocks; alloc takes a free block, free
//   returns it (the kernel keeps pages until the pool is destroyed; so does the model)

import {
  bytes,
  type DmaAddr,
  dmaAddr,
  PAGE_SHIFT,
  PAGE_SIZE,
  type PhysAddr,
  physAddr,
} from '../../../hw/addr.js';
import type { DmaDevice } from '../../dma/device.js';
import { DMA_BIDIRECTIONAL } from '../../dma/dma-types.js';
import { dmaMapPhys, dmaMappingError } from '../../dma/mapping.js';
import { err, type KResult, ok } from '../../errno.js';
import type { Kernel } from '../../kernel.js';
import { allocPages } from '../../mm/page-alloc.js';

/** A coherent buffer: the CPU's physical address and the device's DMA address of byte 0. */
export interface CoherentBuf {
  readonly phys: PhysAddr;
  readonly dma: DmaAddr;
  readonly size: number;
}

/**
 * `dma_alloc_coherent()`: `size` bytes (rounded up to pages), zeroed, mapped for `dev`.
 * @returns the buffer; ENOMEM when no pages or no DMA mapping could be had.
 */
export function dmaAllocCoherent(k: Kernel, dev: DmaDevice, size: number): KResult<CoherentBuf> {
  const pages = Math.ceil(size / PAGE_SIZE);
  const pfn = allocPages(k.mm, pages, dev.fn.numaNode ?? 0);
  if (pfn === null) return err('ENOMEM', `no ${pages} contiguous pages`);
  const phys = physAddr(BigInt(pfn) << BigInt(PAGE_SHIFT));
  k.dma.memory.write(phys, new Uint8Array(pages * PAGE_SIZE));
  const dma = dmaMapPhys(dev, phys, bytes(pages * PAGE_SIZE), DMA_BIDIRECTIONAL);
  if (!dmaMappingError(dev, dma).ok) return err('ENOMEM', 'coherent buffer could not be mapped');
  return ok({ phys, dma, size: pages * PAGE_SIZE });
}

/** `struct dma_pool`. */
export interface DmaPool {
  readonly k: Kernel;
  readonly dev: DmaDevice;
  readonly name: string;
  readonly blockSize: number;
  readonly free: { phys: PhysAddr; dma: DmaAddr }[];
  pages: number;
}

/** `dma_pool_create()`: blocks of `blockSize` bytes (a power of two up to a page). */
export function dmaPoolCreate(k: Kernel, dev: DmaDevice, name: string, blockSize: number): DmaPool {
  if (blockSize <= 0 || blockSize > PAGE_SIZE || (blockSize & (blockSize - 1)) !== 0)
    throw new Error(`BUG: dma_pool_create(${name}, ${blockSize})`);
  return { k, dev, name, blockSize, free: [], pages: 0 };
}

/** `dma_pool_alloc()`: a zeroed block. @returns null when no page could be added (GFP_ATOMIC failure). */
export function dmaPoolAlloc(pool: DmaPool): { phys: PhysAddr; dma: DmaAddr } | null {
  if (pool.free.length === 0) {
    const page = dmaAllocCoherent(pool.k, pool.dev, PAGE_SIZE);
    if (!page.ok) return null;
    pool.pages++;
    for (let off = PAGE_SIZE - pool.blockSize; off >= 0; off -= pool.blockSize)
      pool.free.push({
        phys: physAddr(page.value.phys + BigInt(off)),
        dma: dmaAddr(page.value.dma + BigInt(off)),
      });
  }
  const b = pool.free.pop()!;
  pool.k.dma.memory.write(b.phys, new Uint8Array(pool.blockSize));
  return b;
}

/** `dma_pool_free()`. */
export function dmaPoolFree(pool: DmaPool, block: { phys: PhysAddr; dma: DmaAddr }): void {
  pool.free.push(block);
}
