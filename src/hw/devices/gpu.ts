// A GPU (or any accelerator) as the fabric sees it: device memory (VRAM) exposed through a 64-bit
// prefetchable BAR, registers in BAR0, and a copy engine that moves data between its VRAM and any
// bus address (host RAM, a peer's BAR) in chunks. Mirrors no kernel file; it is the device behind
// nvidia-peermem / amdgpu P2P exporters and the dma-buf exporters of later models.
//
//   peer / host ──fabric── [copy engine] ── VRAM (BAR1 memory: the same bytes a peer reaches by
//                                             writing to BAR1's bus addresses)

import { type Bytes, bytes, type DmaAddr, dmaAddr } from '../addr.js';
import type { Fabric } from '../fabric/fabric.js';
import type { SparseMemory } from '../memory/sparse-memory.js';
import type { PciBar, PciFunction } from '../pci.js';
import { type CopyResult, DmaEngine, type DmaEngineOptions } from './dma-engine.js';

export interface GpuOptions extends Omit<DmaEngineOptions, 'local' | 'name'> {
  /** BAR holding VRAM; default: the machine's vram hint, else the largest 64-bit prefetchable BAR. */
  readonly vramBar?: number;
}

/** The VRAM BAR of a function: the hint, else its largest 64-bit prefetchable memory BAR. */
export function findVramBar(fn: PciFunction, index?: number): PciBar {
  const want = index ?? fn.hints?.vram?.bar;
  const bar =
    want !== undefined
      ? fn.bars.find((b) => b.index === want)
      : [...fn.bars]
          .filter((b) => b.kind === 'mem64' && b.prefetchable)
          .sort((a, b) => (a.size > b.size ? -1 : 1))[0];
  if (!bar)
    throw new Error(
      `${fn.name}: no VRAM BAR (no 64-bit prefetchable BAR${want !== undefined ? ` ${want}` : ''})`,
    );
  if (bar.kind !== 'mem64' || !bar.prefetchable)
    throw new Error(`${fn.name}: BAR${bar.index} is not a 64-bit prefetchable BAR, cannot hold VRAM`);
  return bar;
}

export class Gpu {
  readonly fab: Fabric;
  readonly fn: PciFunction;
  readonly vramBar: PciBar;
  /** VRAM contents: the memory behind the BAR, shared with peers that reach it over the bus. */
  readonly vram: SparseMemory;
  readonly engine: DmaEngine;

  constructor(fab: Fabric, fn: PciFunction, o: GpuOptions = {}) {
    this.fab = fab;
    this.fn = fn;
    this.vramBar = findVramBar(fn, o.vramBar);
    this.vram = fab.addressMap.barMemory(fn, this.vramBar.index);
    this.engine = new DmaEngine(fab, fn, {
      ...o,
      name: `${fn.name} copy engine`,
      local: [{ busBase: this.vramBar.busStart, mem: this.vram }],
    });
  }

  /** Bus address of a VRAM offset (what a peer writes to, what an exporter hands out). */
  vramBusAddr(offset: bigint | number): DmaAddr {
    return dmaAddr(this.vramBar.busStart + BigInt(offset));
  }

  /**
   * Copy `len` bytes from VRAM offset `vramOffset` to `dst` (a bus address or IOVA as this GPU's DMA
   * sees it). @returns nothing; the result (CopyResult) goes to `done`.
   */
  copyFromVram(vramOffset: number, dst: DmaAddr, len: Bytes, done: (r: CopyResult) => void): void {
    this.engine.submit(
      { src: this.vramBusAddr(vramOffset), dst, len, label: `${this.fn.name} vram->${dst}` },
      done,
    );
  }

  /** Copy `len` bytes from `src` into VRAM at `vramOffset`. @returns nothing; the result goes to `done`. */
  copyToVram(src: DmaAddr, vramOffset: number, len: Bytes, done: (r: CopyResult) => void): void {
    this.engine.submit(
      { src, dst: this.vramBusAddr(vramOffset), len, label: `${this.fn.name} ${src}->vram` },
      done,
    );
  }

  /** Copy between any two addresses (either may be this GPU's VRAM). @returns nothing; result to `done`. */
  copy(src: DmaAddr, dst: DmaAddr, len: Bytes | number, done: (r: CopyResult) => void): void {
    this.engine.submit({ src, dst, len: bytes(len) }, done);
  }
}
