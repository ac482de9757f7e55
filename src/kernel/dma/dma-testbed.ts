// Kernels for tests and benchmarks of the DMA-mapping layer: the P2P testbed machine
// (src/kernel/pci/p2pdma-testbed.ts: endpoints behind a switch and on their own root ports) booted
// with the IOMMU off, strict, lazy or in passthrough, and helpers to reach a device's DMA state.

import type { PciFunction } from '../../hw/pci.js';
import { bootKernel, type Kernel } from '../kernel.js';
import { type P2pMachineOptions, p2pMachine } from '../pci/p2pdma-testbed.js';
import type { KernelVersion } from '../profile.js';
import type { DmaDevice } from './device.js';
import { type DmaContext, dmaDeviceOf, type IommuDefaultMode } from './dma-context.js';
import type { DmaInitOptions } from './dma-init.js';

export interface DmaTestbedOptions {
  readonly version?: KernelVersion | undefined;
  /** 'off' boots the machine without an IOMMU. */
  readonly iommu?: IommuDefaultMode | undefined;
  readonly machine?: P2pMachineOptions | undefined;
  readonly dma?: DmaInitOptions | undefined;
  readonly nrCpus?: number | undefined;
  readonly seed?: number | undefined;
}

/** The endpoints of the default testbed: two behind one switch, one on its own root port. */
export const TB_SWITCH_A = '0000:03:00.0';
export const TB_SWITCH_B = '0000:04:00.0';
export const TB_ROOT_PORT = '0000:40:00.0';

/** Boot the testbed machine with the given IOMMU mode and DMA options. */
export function dmaTestKernel(o: DmaTestbedOptions = {}): Kernel {
  const mode = o.iommu ?? 'off';
  const m = p2pMachine(o.machine);
  const machine = { ...m, iommu: mode !== 'off' };
  return bootKernel(machine, {
    version: o.version ?? 'newest',
    nrCpus: o.nrCpus ?? 2,
    seed: o.seed ?? 1,
    dma: { ...o.dma, iommu: mode === 'off' ? undefined : mode },
  });
}

/** The PCI function called `name` (throws for a name the machine lacks: a test bug). */
export function fnOf(k: Kernel, name: string): PciFunction {
  const f = k.machine.byName.get(name);
  if (!f) throw new Error(`no function ${name}`);
  return f;
}

/** The DMA state of function `name`. */
export const devOf = (k: Kernel, name: string = TB_SWITCH_B): DmaDevice => dmaDeviceOf(k.dma, fnOf(k, name));

/** The DMA context of a kernel. */
export const ctxOf = (k: Kernel): DmaContext => k.dma;
