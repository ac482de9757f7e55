// The simulated computer a scenario runs on: one engine (the seed), the bandwidth model, the PCIe
// fabric with its memories, the kernel booted on the same machine and memory, the IOMMU unit shared
// by both, an NVMe controller on every NVMe function with the Linux driver bound to it, and one
// process. Mirrors no kernel file; it is the "boot" of a run.
//
//   Engine(seed) ── FlowModel ── Fabric(machine): links, switches, root complexes, RAM, BARs
//        |                          ^ DMA of devices            ^ CPU loads/stores (kernel memory)
//   Kernel(machine, RAM layout of the fabric, memory = fabric address map)
//        |  dma-iommu's IOMMU unit  ──  is the unit the root complexes translate with
//   NvmeController(fabric, fn)  <──registers (MMIO), interrupts──>  nvme driver (nvmeProbe)

import { bytes, type PhysAddr } from '../../hw/addr.js';
import { NvmeController, type NvmeOptions } from '../../hw/devices/nvme.js';
import type { Fabric } from '../../hw/fabric/fabric.js';
import { buildFabric } from '../../hw/fabric/fabric.js';
import type { IommuUnit } from '../../hw/iommu/iommu.js';
import type { Machine, PciFunction } from '../../hw/pci.js';
import type { IommuDefaultMode } from '../../kernel/dma/dma-context.js';
import type { PhysMemoryAccessor } from '../../kernel/dma/dma-types.js';
import {
  type NvmeDev,
  type NvmeDriverOptions,
  type NvmeHwPort,
  nvmeProbe,
} from '../../kernel/drivers/nvme/pci.js';
import type { IommuDmaSetup } from '../../kernel/iommu/dma-iommu-setup.js';
import { bootKernel, type Kernel } from '../../kernel/kernel.js';
import { type MmStruct, mmAlloc } from '../../kernel/mm/vma.js';
import type { LogLine } from '../../kernel/printk.js';
import type { KernelVersion } from '../../kernel/profile.js';
import { Engine } from '../../sim/engine.js';
import { FlowModel } from '../../sim/flow.js';
import { pcieLinkRate } from '../../sim/link-rate.js';

/** PCI class code of an NVMe controller (mass storage, NVM, NVMe). */
export const PCI_CLASS_NVME = 0x010802;

export interface WorldOptions {
  readonly version: KernelVersion;
  readonly seed: number;
  readonly iommu: IommuDefaultMode;
  readonly nvme?: Omit<NvmeOptions, 'cmb'> | undefined;
  readonly driver?: NvmeDriverOptions | undefined;
  /** Kernel log lines as they are printed. */
  readonly echo?: ((l: LogLine) => void) | undefined;
}

/** One NVMe controller with its driver instance. */
export interface NvmeEntry {
  readonly name: string;
  readonly fn: PciFunction;
  readonly ctrl: NvmeController;
  readonly dev: NvmeDev;
}

export interface World {
  readonly machine: Machine;
  readonly engine: Engine;
  readonly flows: FlowModel;
  readonly fabric: Fabric;
  readonly kernel: Kernel;
  readonly nvme: readonly NvmeEntry[];
  /** The process that runs the scenario's transfers. */
  readonly proc: MmStruct;
  /** The IOMMU unit of the kernel and the root complexes, when translation is on. */
  readonly iommuUnit: IommuUnit | null;
}

/** Kernel memory is the fabric's: RAM and memory BARs through the CPU's address map. */
function fabricMemory(fab: Fabric): PhysMemoryAccessor {
  return {
    read(phys: PhysAddr, len: number) {
      const out = new Uint8Array(len);
      if (!fab.addressMap.cpuRead(phys, out)) out.fill(0xff);
      return out;
    },
    write(phys: PhysAddr, data: Uint8Array) {
      fab.addressMap.cpuWrite(phys, data);
    },
  };
}

/** The driver's register access: CPU loads and stores to BAR0 (lo_hi_readq/writeq for 64 bits). */
function registerPort(fab: Fabric, ctrl: NvmeController): NvmeHwPort {
  const bar0 = ctrl.fn.bars.find((b) => b.index === 0)!;
  const handlers = new Map<number, () => void>();
  ctrl.onInterrupt = (v) => handlers.get(v)?.();
  const rd = (off: number): number => {
    const b = new Uint8Array(4);
    fab.addressMap.cpuRead((bar0.cpuStart + BigInt(off)) as PhysAddr, b);
    return new DataView(b.buffer).getUint32(0, true);
  };
  const wr = (off: number, v: number): void => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    fab.addressMap.cpuWrite((bar0.cpuStart + BigInt(off)) as PhysAddr, b);
  };
  return {
    read32: rd,
    write32: wr,
    read64: (off) => BigInt(rd(off)) | (BigInt(rd(off + 4)) << 32n),
    write64: (off, v) => {
      wr(off, Number(v & 0xffff_ffffn));
      wr(off + 4, Number(v >> 32n));
    },
    requestIrq: (vector, h) => handlers.set(vector, h),
  };
}

/** NVMe functions in enumeration (BDF) order. */
export const nvmeFunctions = (m: Machine): PciFunction[] =>
  m.functions.filter((f) => f.classCode === PCI_CLASS_NVME);

/**
 * Build the world and bind the NVMe driver to every controller, running the engine until every probe
 * finished (a controller that never became ready is reported by the driver and left unbound).
 * @throws only on an inconsistent machine (a bug upstream or an unsupported design).
 */
export function buildWorld(machine: Machine, o: WorldOptions): World {
  const translate = o.iommu !== 'off';
  const m: Machine = { ...machine, iommu: translate };
  const engine = new Engine(o.seed);
  const flows = new FlowModel(engine);
  const fabric = buildFabric(m, { flows, linkRate: pcieLinkRate }, { iommu: translate });
  const ram = fabric.addressMap.ram.map((r) => ({
    start: r.base,
    size: bytes(r.end - r.base),
    node: r.node,
  }));
  const kernel = bootKernel(m, {
    version: o.version,
    seed: o.seed,
    engine,
    echo: o.echo,
    physLayout: { ram },
    dma: { iommu: translate ? o.iommu : undefined, memory: fabricMemory(fabric) },
  });
  const unit = translate ? ((kernel.dma.iommu as IommuDmaSetup | null)?.unit ?? null) : null;
  // The kernel programs one IOMMU unit (dma-iommu-setup.ts); the root complexes translate with it.
  if (unit) for (const rc of fabric.rootComplexes) (rc as { iommu: IommuUnit | null }).iommu = unit;
  const nvme: NvmeEntry[] = [];
  let pending = 0;
  nvmeFunctions(m).forEach((fn, i) => {
    const ctrl = new NvmeController(fabric, fn, o.nvme ?? {});
    pending++;
    const p = nvmeProbe(kernel, fn, registerPort(fabric, ctrl), `nvme${i}`, o.driver ?? {}, () => pending--);
    nvme.push({ name: `nvme${i}`, fn, ctrl, dev: p.dev });
  });
  const limit = engine.nowNs + 60e9;
  while (pending > 0 && engine.nowNs < limit) engine.run(engine.nowNs + 1e6);
  const proc = mmAlloc(kernel.mm, 'dmasim', kernel.dma.memory);
  return { machine: m, engine, flows, fabric, kernel, nvme, proc, iommuUnit: unit };
}

/** The NVMe entry called `ref`: its name (nvme0), an OS name of its function, or its PCI address. */
export function findNvme(w: World, ref: string): NvmeEntry | null {
  return (
    w.nvme.find(
      (e) => e.name === ref || e.fn.osNames.includes(ref) || e.fn.name === ref || e.fn.name.endsWith(ref),
    ) ?? null
  );
}
