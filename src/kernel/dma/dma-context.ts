// The DMA-mapping state of one booted kernel: options (iommu=, iommu.strict, iommu.forcedac,
// swiotlb=, dma_debug), the swiotlb pool, the debug ledger, the IOMMU units and default domains, the
// byte store of physical memory, the P2P page lookup, and the DMA state of each PCI function.
//
// Each device's state is created on first use, as the kernel sets it up at probe
// (`pci_dma_configure()` -> `iommu_probe_device()` -> `iommu_setup_dma_ops()`): a device behind an
// IOMMU with a DMA domain gets dma-iommu, any other device dma-direct.

import { bytes, type PhysAddr, physAddr } from '../../hw/addr.js';
import type { IommuUnit } from '../../hw/iommu/iommu.js';
import type { PhysMemoryMap } from '../../hw/memory/phys-memory-map.js';
import type { Machine, PciFunction } from '../../hw/pci.js';
import type { Engine } from '../../sim/engine.js';
import type { P2pdmaMapType } from '../pci/p2pdma.js';
import type { KernelLog } from '../printk.js';
import type { KernelVersion } from '../profile.js';
import { DmaDebug } from './debug.js';
import {
  type DmaDevice,
  PCI_DEFAULT_DMA_MASK,
  PCI_DEFAULT_MAX_SEG_SIZE,
  PCI_DEFAULT_SEG_BOUNDARY,
} from './device.js';
import { directDmaOps } from './direct-sg.js';
import type { PhysMemoryAccessor } from './dma-types.js';
import { type SwiotlbPool, swiotlbInitPool } from './swiotlb.js';
import { swiotlbDeviceOf } from './swiotlb-map.js';

/** The default IOMMU domain type (`iommu.passthrough=`, `iommu.strict=`, CONFIG_IOMMU_DEFAULT_DMA_*). */
export type IommuDefaultMode = 'off' | 'strict' | 'lazy' | 'passthrough';

/** A P2PDMA provider as the DMA layer sees it (`struct p2pdma_provider`). */
export interface DmaP2pProvider {
  /** The PCI function whose BAR holds the memory (`provider->owner`). */
  readonly owner: PciFunction;
  /** `provider->bus_offset`: bus address minus CPU physical address of the BAR. */
  readonly busOffset: bigint;
}

/** The seam to the P2PDMA side (drivers/pci/p2pdma.c and mm's pgmap lookup). */
export interface DmaP2pLookup {
  /** `is_pci_p2pdma_page()` + `page->pgmap`'s provider: the provider of the page at `pfn`, or null. */
  providerOfPfn(pfn: number): DmaP2pProvider | null;
  /** `pci_p2pdma_map_type()`: the cached decision, computed verbosely on the first lookup. */
  mapType(provider: DmaP2pProvider, client: PciFunction): P2pdmaMapType;
}

/** No P2P memory anywhere. */
export const NO_P2P: DmaP2pLookup = {
  providerOfPfn: () => null,
  mapType: () => 'not-supported',
};

export interface DmaOptions {
  /** Default domain type for devices behind an IOMMU; 'off' when the machine has none. */
  readonly iommu?: IommuDefaultMode | undefined;
  /** `iommu.forcedac=1`: no 32-bit-first IOVA allocation for PCI devices. */
  readonly forcedac?: boolean | undefined;
  /** `swiotlb=force` bounces every streaming mapping; 'off' has no pool (`swiotlb=noforce`). */
  readonly swiotlb?: 'on' | 'force' | 'off' | undefined;
  /** Physical address and size of the swiotlb pool (default 64 MiB at 0x7c000000, below 2 GiB). */
  readonly swiotlbStart?: PhysAddr | undefined;
  readonly swiotlbSizeBytes?: bigint | undefined;
  /** CONFIG_DMA_API_DEBUG: the ledger records every mapping (default on in the model). */
  readonly debug?: boolean | undefined;
  /** dma-api/all_errors: print every violation, not just the first (`show_num_errors` = 1). */
  readonly debugAllErrors?: boolean | undefined;
  /** Highest RAM address + 1 (`max_pfn << PAGE_SHIFT`); sets `dma_direct_get_required_mask()`. */
  readonly ramEnd?: PhysAddr | undefined;
  /** Functions behind an external-facing port (`pdev->untrusted`), by `pci_name()`. */
  readonly untrusted?: readonly string[] | undefined;
  /** Model the dma-direct THRU_HOST_BRIDGE `break` bug of 6.16 to mid-2026 (default false). */
  readonly thruHostBridgeBreakBug?: boolean | undefined;
  /** Functions that do not snoop CPU caches (`dev_is_dma_coherent()` false), by `pci_name()`. */
  readonly nonCoherent?: readonly string[] | undefined;
}

/** What the DMA layer needs from the kernel it lives in. */
export interface DmaHost {
  readonly machine: Machine;
  readonly version: KernelVersion;
  readonly engine: Engine;
  readonly nrCpus: number;
  readonly log: KernelLog;
}

/** The IOMMU side of the context, filled by src/kernel/iommu/dma-iommu-setup.ts. */
export interface DmaIommuSetup {
  /** The IOMMU hardware that translates the devices' DMA (the fabric asks it). */
  readonly unit: IommuUnit;
  /** `iommu_probe_device()` + `iommu_setup_dma_ops()`: give `dev` its domain and ops. */
  probe(dev: DmaDevice): void;
}

/** Counters of work the model does not otherwise show (x86 cache maintenance is a no-op, so counted). */
export interface DmaStats {
  /** `arch_sync_dma_for_device()` calls (non-coherent devices). */
  archSyncForDevice: number;
  /** `arch_sync_dma_for_cpu()` calls. */
  archSyncForCpu: number;
  /** Mappings bounced through swiotlb. */
  swiotlbMaps: number;
}

export interface DmaContext extends DmaHost {
  readonly opts: Required<Pick<DmaOptions, 'forcedac' | 'debug' | 'debugAllErrors'>> & DmaOptions;
  /** The iommu mode in force (machine without an IOMMU: 'off'). */
  readonly iommuMode: IommuDefaultMode;
  /** The CPU the current call runs on (per-CPU IOVA caches, flush queues, swiotlb areas). */
  cpu: number;
  /** Bytes of physical memory (swiotlb bounces and device DMA read and write through it). */
  memory: PhysMemoryAccessor;
  /** The decoder behind `memory` when the DMA layer built it (RAM regions; others may add BARs). */
  memoryMap: PhysMemoryMap | null;
  readonly swiotlb: SwiotlbPool | null;
  readonly debug: DmaDebug;
  p2p: DmaP2pLookup;
  iommu: DmaIommuSetup | null;
  readonly ramEnd: PhysAddr;
  /** `pfn_valid() && !PageReserved()`: is `phys` ordinary RAM? (the mm layer's phys map when wired) */
  isRam: (phys: bigint) => boolean;
  readonly stats: DmaStats;
  /**
   * Model the 6.16-2026 dma-direct bug where a THRU_HOST_BRIDGE segment was left without a DMA
   * address (`break` instead of `fallthrough`); off by default (the fixed, stable-backported code).
   */
  readonly thruHostBridgeBreakBug: boolean;
  /** Device state by function index. */
  readonly devices: Map<number, DmaDevice>;
  /** Every device created, by dense id. */
  readonly deviceList: DmaDevice[];
}

/** A sparse byte store in 64 KiB chunks: what RAM holds until the hw memory model backs it. */
export function sparsePhysMemory(): PhysMemoryAccessor {
  const CHUNK = 1 << 16;
  const chunks = new Map<number, Uint8Array>();
  const each = (phys: bigint, len: number, f: (c: number, off: number, n: number, done: number) => void) => {
    let done = 0;
    let p = phys;
    while (done < len) {
      const c = Number(p >> 16n);
      const off = Number(p & BigInt(CHUNK - 1));
      const n = Math.min(len - done, CHUNK - off);
      f(c, off, n, done);
      done += n;
      p += BigInt(n);
    }
  };
  return {
    read(phys, len) {
      const out = new Uint8Array(len);
      each(phys, len, (c, off, n, done) => {
        const ch = chunks.get(c);
        if (ch) out.set(ch.subarray(off, off + n), done);
      });
      return out;
    },
    write(phys, data) {
      each(phys, data.length, (c, off, n, done) => {
        let ch = chunks.get(c);
        if (!ch) {
          ch = new Uint8Array(CHUNK);
          chunks.set(c, ch);
        }
        ch.set(data.subarray(done, done + n), off);
      });
    },
  };
}

const DEFAULT_SWIOTLB_START = physAddr(0x7c00_0000);
const DEFAULT_RAM_END = physAddr(0x2_0000_0000);
/** The x86 32-bit PCI hole (MMIO below 4 GiB) the default layout leaves out of RAM. */
const PCI_HOLE_START = 0xc000_0000n;
const PCI_HOLE_END = 0x1_0000_0000n;

/**
 * Create the DMA state of a kernel: the swiotlb pool (unless off), the debug ledger (which prints
 * its boot lines), and no devices yet. The IOMMU side is attached by `iommuDmaSetup()`.
 */
export function dmaContextCreate(
  host: DmaHost,
  opts: DmaOptions = {},
  memory: PhysMemoryAccessor = sparsePhysMemory(),
): DmaContext {
  const iommuMode: IommuDefaultMode = host.machine.iommu === true ? (opts.iommu ?? 'lazy') : 'off';
  const swiotlb =
    opts.swiotlb === 'off'
      ? null
      : swiotlbInitPool({
          version: host.version,
          start: opts.swiotlbStart ?? DEFAULT_SWIOTLB_START,
          sizeBytes: opts.swiotlbSizeBytes !== undefined ? bytes(opts.swiotlbSizeBytes) : undefined,
          nrCpus: host.nrCpus,
          memory,
          log: host.log,
        });
  const full = {
    ...opts,
    forcedac: opts.forcedac ?? false,
    debug: opts.debug ?? true,
    debugAllErrors: opts.debugAllErrors ?? false,
  };
  const ramEnd = opts.ramEnd ?? DEFAULT_RAM_END;
  return {
    ...host,
    opts: full,
    iommuMode,
    cpu: 0,
    memory,
    memoryMap: null,
    swiotlb,
    debug: new DmaDebug(host.version, host.log, () => host.engine.nowNs, full.debug, full.debugAllErrors),
    p2p: NO_P2P,
    iommu: null,
    ramEnd,
    isRam: (p) => p < ramEnd && !(p >= PCI_HOLE_START && p < PCI_HOLE_END),
    stats: { archSyncForDevice: 0, archSyncForCpu: 0, swiotlbMaps: 0 },
    thruHostBridgeBreakBug: opts.thruHostBridgeBreakBug ?? false,
    devices: new Map(),
    deviceList: [],
  };
}

/**
 * The DMA state of a PCI function, created at first use with the PCI core's defaults (32-bit masks,
 * 64 KiB segments, 4 GiB boundary) and the ops its IOMMU setup chooses.
 */
export function dmaDeviceOf(ctx: DmaContext, fn: PciFunction): DmaDevice {
  const have = ctx.devices.get(fn.index);
  if (have) return have;
  const dev = {
    fn,
    ctx,
    name: fn.name,
    dmaMask: PCI_DEFAULT_DMA_MASK,
    coherentDmaMask: PCI_DEFAULT_DMA_MASK,
    busDmaLimit: 0n,
    dmaRangeMap: null,
    coherent: !(ctx.opts.nonCoherent ?? []).includes(fn.name),
    untrusted: (ctx.opts.untrusted ?? []).includes(fn.name),
    ops: directDmaOps,
    dmaSkipSync: false,
    maxSegSize: PCI_DEFAULT_MAX_SEG_SIZE,
    segBoundaryMask: PCI_DEFAULT_SEG_BOUNDARY,
    minAlignMask: 0,
    iommu: null,
    forceBounce: ctx.opts.swiotlb === 'force',
    id: ctx.deviceList.length,
  } as Omit<DmaDevice, 'swiotlbDev'> as DmaDevice;
  (dev as { swiotlbDev: DmaDevice['swiotlbDev'] }).swiotlbDev = swiotlbDeviceOf(dev);
  ctx.devices.set(fn.index, dev);
  ctx.deviceList.push(dev);
  if (ctx.iommuMode !== 'off') ctx.iommu?.probe(dev);
  dev.dmaSkipSync = dev.ops.initialSkipSync(dev);
  return dev;
}
