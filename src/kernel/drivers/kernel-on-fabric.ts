// A kernel booted on a fabric, for the driver tests and the dma-buf scenarios: one engine (virtual
// clock) for both, the kernel's RAM layout taken from the fabric, its physical memory read and written
// through the fabric's address map (RAM and BARs are the same bytes devices move), and the kernel's
// IOMMU unit translating the fabric's DMA (so what dma-iommu or iommufd maps is what a device's request
// sees). Mirrors no kernel file; src/analysis/run/world.ts does the same for NVMe runs.

import { bytes, type PhysAddr } from '../../hw/addr.js';
import { buildFabric, type Fabric } from '../../hw/fabric/fabric.js';
import type { IommuUnit } from '../../hw/iommu/iommu.js';
import type { Machine, PciFunction } from '../../hw/pci.js';
import { Engine } from '../../sim/engine.js';
import { FlowModel } from '../../sim/flow.js';
import { pcieLinkRate } from '../../sim/link-rate.js';
import type { IommuDefaultMode } from '../dma/dma-context.js';
import type { PhysMemoryAccessor } from '../dma/dma-types.js';
import { dmaBufWorldOf } from '../dma-buf/dma-buf-kernel.js';
import type { DmaBufWorld } from '../dma-buf/world.js';
import type { IommuDmaSetup } from '../iommu/dma-iommu-setup.js';
import { bootKernel, type Kernel } from '../kernel.js';
import type { KernelVersion } from '../profile.js';
import { createTimeline, type Timeline } from './timeline.js';

export interface KernelOnFabric {
  readonly engine: Engine;
  readonly fab: Fabric;
  readonly k: Kernel;
  readonly world: DmaBufWorld;
  readonly tl: Timeline;
  /** The IOMMU unit both sides use; null without an IOMMU. */
  readonly unit: IommuUnit | null;
  fn(name: string): PciFunction;
}

export interface KernelOnFabricOptions {
  readonly version?: KernelVersion;
  readonly iommu?: IommuDefaultMode;
  readonly seed?: number;
}

/** CPU accesses to physical memory as the fabric's address map answers them (all ones where nothing decodes). */
export function fabricMemory(fab: Fabric): PhysMemoryAccessor {
  return {
    read(phys: PhysAddr, len: number): Uint8Array {
      const out = new Uint8Array(len);
      if (!fab.addressMap.cpuRead(phys, out)) out.fill(0xff);
      return out;
    },
    write(phys: PhysAddr, data: Uint8Array): void {
      fab.addressMap.cpuWrite(phys, data);
    },
  };
}

/** Build the fabric of `machine`, boot a kernel on it, and make both share memory and IOMMU. */
export function kernelOnFabric(machine: Machine, o: KernelOnFabricOptions = {}): KernelOnFabric {
  const mode = o.iommu ?? 'off';
  const m: Machine = { ...machine, iommu: mode !== 'off' };
  const engine = new Engine(o.seed ?? 1);
  const fab = buildFabric(
    m,
    { flows: new FlowModel(engine), linkRate: pcieLinkRate },
    { iommu: mode !== 'off' },
  );
  const ram = fab.addressMap.ram.map((r) => ({ start: r.base, size: bytes(r.end - r.base), node: r.node }));
  const k = bootKernel(m, {
    version: o.version ?? 'newest',
    seed: o.seed ?? 1,
    engine,
    physLayout: { ram },
    dma: { iommu: mode === 'off' ? undefined : mode, memory: fabricMemory(fab) },
  });
  const unit = (k.dma.iommu as IommuDmaSetup | null)?.unit ?? null;
  // One IOMMU: the one the kernel programs is the one the root complexes consult.
  if (unit) for (const rc of fab.rootComplexes) (rc as { iommu: IommuUnit | null }).iommu = unit;
  return {
    engine,
    fab,
    k,
    world: dmaBufWorldOf(k),
    tl: createTimeline(() => engine.nowNs),
    unit,
    fn(name: string): PciFunction {
      const f = m.byName.get(name);
      if (!f) throw new Error(`no function ${name} in ${m.name}`);
      return f;
    },
  };
}
