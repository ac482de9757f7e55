// One booted kernel: the machine it runs on, its profile, virtual time, its log, and the state of each
// subsystem. Every kernel-model entry point takes the Kernel (or a subsystem state hung off it), never
// globals, so several kernels (6.1 and newest, or two seeds) can run side by side in one process.
//
// Subsystems add their state as fields here, initialised by their own `xxxInit(kernel)` function;
// shared code reads a subsystem's state only through that subsystem's API.

import type { Machine } from '../hw/pci.js';
import { Engine } from '../sim/engine.js';
import type { DmaContext } from './dma/dma-context.js';
import { type DmaInitOptions, dmaInit } from './dma/dma-init.js';
import { type MmState, mmInit } from './mm/mm.js';
import type { PhysLayout } from './mm/phys-map.js';
import { createP2pdmaContext, type P2pdmaContext } from './pci/p2pdma.js';
import { createKernelLog, type KernelLog, type LogLine } from './printk.js';
import type { KernelVersion } from './profile.js';

export interface KernelOptions {
  readonly version: KernelVersion;
  /** Seed of the one PRNG everything draws from (printed first by runs). */
  readonly seed?: number | undefined;
  /** Share an engine (virtual clock) with the hardware simulation; a new one otherwise. */
  readonly engine?: Engine | undefined;
  /** Number of CPUs (per-CPU caches, swiotlb areas); default 2. */
  readonly nrCpus?: number | undefined;
  /** Echo each log line as it is printed (for --verbose runs). */
  readonly echo?: ((l: LogLine) => void) | undefined;
  /** RAM layout when the machine does not describe it (src/kernel/mm/phys-map.ts). */
  readonly physLayout?: PhysLayout | undefined;
  /** DMA mapping: iommu mode, swiotlb, dma-debug and more (src/kernel/dma/dma-init.ts). */
  readonly dma?: DmaInitOptions | undefined;
}

export interface Kernel {
  readonly machine: Machine;
  readonly version: KernelVersion;
  readonly engine: Engine;
  readonly nrCpus: number;
  readonly log: KernelLog;
  /** P2PDMA: providers' state and the map-type decision (drivers/pci/p2pdma.c). */
  readonly p2p: P2pdmaContext;
  /** Memory management: physical map, struct pages, ZONE_DEVICE pagemaps (src/kernel/mm). */
  readonly mm: MmState;
  /** DMA mapping: per-device DMA state, swiotlb, IOMMU domains, the debug ledger (src/kernel/dma). */
  readonly dma: DmaContext;
}

/** Boot a kernel model on a machine. */
export function bootKernel(machine: Machine, opts: KernelOptions): Kernel {
  const engine = opts.engine ?? new Engine(opts.seed ?? 1);
  const log = createKernelLog(() => engine.nowNs, opts.echo);
  const p2p = createP2pdmaContext(machine, opts.version, { log: (l) => log.printk('warn', l) });
  const base = { machine, version: opts.version, engine, nrCpus: opts.nrCpus ?? 2, log, p2p };
  const kernel = { ...base, mm: mmInit(base, opts.physLayout), dma: null as unknown as DmaContext };
  kernel.dma = dmaInit(kernel, opts.dma);
  return kernel;
}
