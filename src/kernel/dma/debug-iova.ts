// The ledger's record of the IOVA two-step API. mainline's dma-debug has no hooks in dma_iova_link()
// or dma_iova_unlink(); the model records each link as an entry (so leaks at device release and
// CPU access to linked memory are caught like any other mapping) and checks that an unlink or destroy
// covers whole links. The texts for unlink problems are the model's own, shaped like check_unmap()'s.

import { hexPad, type PhysAddr } from '../../hw/addr.js';
import type { DebugDev, DmaDebug, DmaDebugCall } from './debug.js';
import { HASH_FN_SHIFT, HASH_SIZE, hashFn, MAP_ERR_CHECK_NOT_APPLICABLE, T_PHY } from './debug-entries.js';
import { DMA_DIRECTION_VALUE, type DmaDirection } from './dma-types.js';

const h16 = (v: bigint): string => hexPad(v, 16);

/** Record `dma_iova_link()` of [phys, phys + size) at `dmaAddr`. */
export function debugDmaIovaLink(
  d: DmaDebug,
  dev: DebugDev,
  phys: PhysAddr,
  dmaAddr: bigint,
  size: bigint,
  dir: DmaDirection,
  attrs: number,
): void {
  if (!d.enabled) return;
  d.noteDev(dev);
  const E = d.e;
  const e = E.alloc();
  E.dev[e] = dev.id;
  E.type[e] = T_PHY;
  E.paddr[e] = phys;
  E.devAddr[e] = dmaAddr;
  E.size[e] = size;
  E.dir[e] = DMA_DIRECTION_VALUE[dir];
  E.mapErr[e] = MAP_ERR_CHECK_NOT_APPLICABLE;
  E.attrs[e] = attrs;
  E.call[e] = d.callId('dma_iova_link');
  E.timeNs[e] = d.now();
  E.add(e);
}

/**
 * Check and drop the link entries inside [addr, addr + size) for `dma_iova_unlink()` or
 * `dma_iova_destroy()`: a link only partly inside is reported, and so is a range with no link.
 */
export function debugDmaIovaUnlink(
  d: DmaDebug,
  dev: DebugDev,
  addr: bigint,
  size: bigint,
  call: DmaDebugCall,
): void {
  if (!d.enabled) return;
  d.noteDev(dev);
  const E = d.e;
  const linkId = d.callId('dma_iova_link');
  const end = addr + size;
  const buckets = Math.min(HASH_SIZE, Number((size >> HASH_FN_SHIFT) + 2n));
  const first = hashFn(addr);
  const drop: number[] = [];
  const c = `${call}(dev_addr=${h16(addr)}, size=${size})`;
  for (let k = 0; k < buckets; k++) {
    const b = (first + k) % HASH_SIZE;
    for (let e = E.heads[b]!; e >= 0; e = E.next[e]!) {
      if (E.dev[e] !== dev.id || E.call[e] !== linkId) continue;
      const a = E.devAddr[e]!;
      const z = a + E.size[e]!;
      if (z <= addr || a >= end) continue;
      if (a < addr || z > end) {
        d.errPrintk(
          'iova-unlink-partial',
          dev,
          e,
          `device driver unlinks part of an IOVA link [device address=${h16(a)}] [link size=${E.size[e]} bytes] [unlink range=${h16(addr)}+${size}]`,
          c,
        );
      }
      drop.push(e);
    }
  }
  if (drop.length === 0) {
    d.errPrintk(
      'free-not-allocated',
      dev,
      -1,
      `device driver tries to free DMA memory it has not allocated [device address=${h16(addr)}] [size=${size} bytes]`,
      c,
    );
  }
  for (const e of drop) E.remove(e);
}
