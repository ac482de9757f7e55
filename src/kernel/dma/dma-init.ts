// Boot-time set-up of the DMA-mapping layer on a Kernel: RAM bytes from the mm physical map (a sparse
// memory region per System RAM range in a `PhysMemoryMap`), the swiotlb pool at the top of the highest
// RAM range below 4 GiB (where `swiotlb_init()` takes it from memblock), the P2PDMA lookup of
// drivers/pci/p2pdma.c, and, on a machine with an IOMMU, dma-iommu with the host-bridge windows
// reserved in every DMA domain's IOVA space.

import { bytes, GiB, MiB, PAGE_SHIFT, type PhysAddr, physAddr } from '../../hw/addr.js';
import { PhysMemoryMap } from '../../hw/memory/phys-memory-map.js';
import { SparseMemory } from '../../hw/memory/sparse-memory.js';
import { type IommuDmaSetupOptions, type IovaReservation, iommuDmaSetup } from '../iommu/dma-iommu-setup.js';
import type { Kernel } from '../kernel.js';
import { type PhysMap, pfnIsRam } from '../mm/phys-map.js';
import { p2pdmaDmaLookup } from '../pci/p2pdma-map.js';
import type { DmaDevice } from './device.js';
import { type DmaContext, type DmaOptions, dmaContextCreate } from './dma-context.js';
import type { PhysMemoryAccessor } from './dma-types.js';
import { IO_TLB_DEFAULT_SIZE } from './swiotlb.js';

export interface DmaInitOptions extends DmaOptions {
  /** Byte store of physical memory to use instead of fresh sparse RAM (e.g. the fabric's map). */
  readonly memory?: PhysMemoryAccessor | undefined;
  readonly iommuSetup?: IommuDmaSetupOptions | undefined;
}

/** A `PhysMemoryAccessor` over a `PhysMemoryMap`: reads of undecoded bytes give all ones, writes there are dropped. */
export function physMemoryAccessor(map: PhysMemoryMap): PhysMemoryAccessor {
  return {
    read(phys, len) {
      const out = new Uint8Array(len);
      if (!map.read(phys, out).ok) out.fill(0xff);
      return out;
    },
    write(phys, data) {
      map.write(phys, data);
    },
  };
}

/** One sparse RAM region per System RAM range of the physical map. */
export function ramMemoryMap(pm: PhysMap): PhysMemoryMap {
  const map = new PhysMemoryMap();
  for (const r of pm.ram) {
    if (r.kind !== 'ram') continue;
    map.add(r.start, new SparseMemory(`ram@${r.start.toString(16)}`, 'ram', bytes(r.end - r.start + 1n)));
  }
  return map;
}

/** The top `size` bytes of the highest RAM range below 4 GiB (page aligned), or 0 when none fits. */
function swiotlbPlacement(pm: PhysMap, size: bigint): PhysAddr {
  let best = 0n;
  for (const r of pm.ram) {
    if (r.kind !== 'ram' || r.start >= 4n * GiB) continue;
    const end = (r.end < 4n * GiB ? r.end + 1n : 4n * GiB) & ~(MiB - 1n);
    if (end - r.start >= size && end - size > best) best = end - size;
  }
  return physAddr(best);
}

/**
 * The host-bridge MEM windows of a device's host bridge as bus addresses (`res->start - offset`): each
 * window's CPU-to-bus offset is that of the BARs inside it (0 when it holds none).
 */
function windowsOf(pm: PhysMap, dev: DmaDevice): IovaReservation[] {
  const hb = dev.fn.hostBridge;
  return pm.windows
    .filter((w) => w.kind === 'mmio-window' && w.hostBridge === hb)
    .map((w) => {
      const bar = pm.bars.find((b) => b.fn?.hostBridge === hb && b.start >= w.start && b.end <= w.end);
      const fnBar = bar?.fn?.bars.find((x) => x.index === bar.bar);
      const offset = fnBar ? fnBar.cpuStart - fnBar.busStart : 0n;
      return { start: BigInt.asUintN(64, w.start - offset), end: BigInt.asUintN(64, w.end - offset) };
    });
}

/**
 * Set up DMA mapping for a booting kernel (called by `bootKernel()` once `mm` exists).
 * @returns the DMA context; devices get their state on first use (`dmaDeviceOf()`).
 */
export function dmaInit(k: Kernel, opts: DmaInitOptions = {}): DmaContext {
  const pm = k.mm.physMap;
  const sysRam = pm.ram.filter((r) => r.kind === 'ram');
  const ramEnd = physAddr(sysRam.reduce((m, r) => (r.end + 1n > m ? r.end + 1n : m), 0n));
  const map = opts.memory === undefined ? ramMemoryMap(pm) : null;
  const memory = opts.memory ?? physMemoryAccessor(map!);
  const poolSize = opts.swiotlbSizeBytes ?? IO_TLB_DEFAULT_SIZE;
  const ctx = dmaContextCreate(
    k,
    {
      ...opts,
      ramEnd: opts.ramEnd ?? ramEnd,
      swiotlbStart: opts.swiotlbStart ?? swiotlbPlacement(pm, poolSize),
    },
    memory,
  );
  ctx.memoryMap = map;
  ctx.isRam = (p) => pfnIsRam(pm, Number(p >> BigInt(PAGE_SHIFT)));
  ctx.debug.isRam = ctx.isRam;
  ctx.p2p = p2pdmaDmaLookup(k);
  if (ctx.iommuMode !== 'off') iommuDmaSetup(ctx, { windowsOf: (d) => windowsOf(pm, d), ...opts.iommuSetup });
  return ctx;
}
