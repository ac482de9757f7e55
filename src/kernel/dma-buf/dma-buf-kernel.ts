// The dma-buf state of a booted kernel: one DmaBufWorld per Kernel, sharing its engine (virtual clock)
// and profile, created on first use. The kernel keeps the same things as globals of drivers/dma-buf/.

import type { Kernel } from '../kernel.js';
import { createDmaBufWorld, type DmaBufWorld } from './world.js';

const worlds = new WeakMap<Kernel, DmaBufWorld>();

/**
 * The kernel's dma-buf world: same profile and engine; CONFIG_DMA_API_DEBUG follows the DMA layer's
 * debug ledger. @returns the world (created on the first call).
 */
export function dmaBufWorldOf(k: Kernel): DmaBufWorld {
  let w = worlds.get(k);
  if (!w) {
    w = createDmaBufWorld({ profile: k.version, engine: k.engine, dmaApiDebug: k.dma.debug.enabled });
    worlds.set(k, w);
  }
  return w;
}
