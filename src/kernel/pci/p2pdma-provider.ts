// P2PDMA providers (drivers/pci/p2pdma.c): a PCI function offers BAR memory to peers. This file sets a
// provider up and tears it down: pci_p2pdma_setup() (6.1), pcim_p2pdma_init()/pcim_p2pdma_provider()/
// pci_p2pdma_setup_pool() (newest), pci_p2pdma_add_resource(), the pagemap free callback and the
// devres release on driver unbind. Allocation lives in p2pdma-alloc.ts, sysfs in p2pdma-sysfs.ts, the
// DMA-side lookups in p2pdma-map.ts.
//
//   BAR (CPU view) cpuStart ................ cpuStart+len-1      bus offset = busStart - cpuStart (u64)
//        [ offset | pgmap range: ZONE_DEVICE pages, direct-mapped at __va(cpuStart+offset) ]
//   pool chunk:   virt = __va(cpuStart+offset)   "phys" = busStart+offset   owner = pgmap ref
//
// The memory is not published: a driver calls pci_p2pmem_publish() (p2pdma-alloc.ts) to offer it.

import { bytes, PAGE_SHIFT, PAGE_SIZE_N, physAddr } from '../../hw/addr.js';
import type { PciBar, PciFunction } from '../../hw/pci.js';
import { err, type KResult, ok } from '../errno.js';
import type { Kernel } from '../kernel.js';
import { pfnToVirt } from '../mm/direct-map.js';
import { genPoolAddOwner, genPoolCreate, genPoolDestroy, genPoolFreeOwner } from '../mm/genalloc.js';
import {
  createDevPagemap,
  type DevPagemap,
  devmMemremapPages,
  hashLlx,
  memunmapPages,
} from '../mm/memremap.js';
import { type Page, pfnToPage, putPage } from '../mm/page.js';
import { percpuRefPut } from '../mm/percpu-ref.js';
import type { KernelVersion } from '../profile.js';
import type { P2pdmaState } from './p2pdma.js';

/** `struct p2pdma_provider`: MMIO the CPU can reach, owned by a device, and its bus offset. */
export interface P2pdmaProvider {
  /** `owner`: the PCI function whose BAR it is. */
  readonly owner: PciFunction;
  /** `bus_offset`: pci_bus_address() - pci_resource_start() of the BAR, as a u64 (wraps below zero). */
  readonly busOffset: bigint;
  /** The BAR (newest keeps one provider per BAR; a 6.1 pagemap records its own). */
  readonly bar: number;
}

/** A userspace mapping of the `allocate` file (p2pdma-sysfs.ts): each page holds the VMA's reference. */
export interface P2pmemMapping {
  readonly pdev: PciFunction;
  readonly pfns: readonly number[];
  /** False once unmapped (munmap or the unbind zap). */
  live: boolean;
}

/** What the driver binding holds for the provider (its devres actions and user mappings). */
export interface P2pdmaDevres {
  /** Pagemaps added by pci_p2pdma_add_resource(), in order. */
  readonly pagemaps: DevPagemap[];
  /** Live mappings of the `allocate` file. */
  readonly mappings: Set<P2pmemMapping>;
  /** newest: the `allocate` attribute was removed (pci_p2pdma_unmap_mappings ran). */
  allocateRemoved: boolean;
  /** Set once the unbind started; further add_resource calls are bugs. */
  releasing: boolean;
}

/** What differs between kernels in the provider code. */
export interface P2pdmaProviderProfile {
  /** newest: pcim_p2pdma_init()/pcim_p2pdma_provider() and a provider per BAR. */
  readonly perBarProviders: boolean;
  /** The pagemap has a free callback (userspace P2PDMA, 6.2+): p2pdma_page_free / p2pdma_folio_free. */
  readonly pgmapFreeOp: boolean;
  /** The `allocate` mmap file exists (6.2+). */
  readonly allocateFile: boolean;
  /** pci_has_p2pmem() also requires a pool (newest; 6.1 only checks publication). */
  readonly hasP2pmemNeedsPool: boolean;
  /** The random pick of pci_p2pmem_find_many(), for reports. */
  readonly randomFn: string;
}

export const P2PDMA_PROVIDER_PROFILES: Readonly<Record<KernelVersion, P2pdmaProviderProfile>> = {
  '6.1': {
    perBarProviders: false,
    pgmapFreeOp: false,
    allocateFile: false,
    hasP2pmemNeedsPool: false,
    randomFn: 'prandom_u32_max',
  },
  newest: {
    perBarProviders: true,
    pgmapFreeOp: true,
    allocateFile: true,
    hasP2pmemNeedsPool: true,
    randomFn: 'get_random_u32_below',
  },
};

/** `PCI_STD_NUM_BARS`. */
export const PCI_STD_NUM_BARS = 6;
/** The IBM ISM device (s390 only) whose BARs cannot be mapped (`zpci_ism_bar_no_mmap`). */
const PCI_VENDOR_ID_IBM = 0x1014;
const PCI_DEVICE_ID_IBM_ISM = 0x04ed;

export const providerProfile = (k: Kernel): P2pdmaProviderProfile => P2PDMA_PROVIDER_PROFILES[k.version];

/** `pdev->p2pdma` (null when not set up). */
export const pciP2pdmaOf = (k: Kernel, pdev: PciFunction): P2pdmaState | null =>
  k.p2p.p2pdma.get(pdev.index) ?? null;

/** `pdev->non_mappable_bars`: set by the s390 early fixup for IBM ISM devices (newest kernels). */
export function pciNonMappableBars(k: Kernel, pdev: PciFunction): boolean {
  const arch = k.machine.cpu?.arch ?? '';
  return (
    providerProfile(k).perBarProviders &&
    arch.startsWith('s390') &&
    pdev.vendor === PCI_VENDOR_ID_IBM &&
    pdev.device === PCI_DEVICE_ID_IBM_ISM
  );
}

/** The BAR `bar` when `pci_resource_flags()` has IORESOURCE_MEM (a memory BAR or the ROM). */
export function pciMemBar(pdev: PciFunction, bar: number): PciBar | null {
  const b = pdev.bars.find((x) => x.index === bar);
  return b !== undefined && b.kind !== 'io' && b.size > 0n ? b : null;
}

/** `pci_bus_address() - pci_resource_start()` as the kernel's u64. */
export const barBusOffset = (b: PciBar): bigint => BigInt.asUintN(64, b.busStart - b.cpuStart);

const newDevres = (): P2pdmaDevres => ({
  pagemaps: [],
  mappings: new Set(),
  allocateRemoved: false,
  releasing: false,
});

function warnOn(k: Kernel, fn: string, cond: string): void {
  k.log.printk('warn', `WARNING: drivers/pci/p2pdma.c: ${fn}: WARN_ON(${cond})`);
}

/**
 * 6.1 `pci_p2pdma_setup()`: the p2pdma state with its pool (granule PAGE_SIZE) and the p2pmem sysfs
 * group. The model's allocations do not fail. @returns the new state.
 */
function pciP2pdmaSetup(k: Kernel, pdev: PciFunction): P2pdmaState {
  const st: P2pdmaState = {
    published: false,
    mapTypes: new Map(),
    pool: genPoolCreate(PAGE_SHIFT),
    devres: newDevres(),
  };
  k.p2p.p2pdma.set(pdev.index, st);
  return st;
}

/**
 * newest `pcim_p2pdma_init()`: set up p2pdma state with a provider for every memory BAR (no pool, no
 * sysfs). Idempotent. Precondition: the profile has per-BAR providers (the API does not exist in 6.1;
 * calling it there throws).
 * @returns ok; EOPNOTSUPP when the device's BARs are not mappable (`non_mappable_bars`).
 */
export function pcimP2pdmaInit(k: Kernel, pdev: PciFunction): KResult<void> {
  if (!providerProfile(k).perBarProviders)
    throw new Error(`pcim_p2pdma_init() does not exist in Linux ${k.version}`);
  if (pciNonMappableBars(k, pdev))
    return err('EOPNOTSUPP', `${pdev.name}: BARs are not mappable (non_mappable_bars)`);
  if (pciP2pdmaOf(k, pdev) !== null) return ok(undefined);
  const mem: (P2pdmaProvider | null)[] = [];
  for (let i = 0; i < PCI_STD_NUM_BARS; i++) {
    const b = pciMemBar(pdev, i);
    mem.push(b ? { owner: pdev, busOffset: barBusOffset(b), bar: i } : null);
  }
  k.p2p.p2pdma.set(pdev.index, {
    published: false,
    mapTypes: new Map(),
    pool: null,
    mem,
    devres: newDevres(),
  });
  return ok(undefined);
}

/**
 * newest `pcim_p2pdma_provider()`: the provider of one BAR.
 * @returns the provider; null when the BAR is not memory or not mappable, and null with a WARN_ON when
 *   pcim_p2pdma_init() was not called. Precondition: a profile with per-BAR providers.
 */
export function pcimP2pdmaProvider(k: Kernel, pdev: PciFunction, bar: number): P2pdmaProvider | null {
  if (!providerProfile(k).perBarProviders)
    throw new Error(`pcim_p2pdma_provider() does not exist in Linux ${k.version}`);
  if (pciMemBar(pdev, bar) === null || pciNonMappableBars(k, pdev)) return null;
  const st = pciP2pdmaOf(k, pdev);
  if (st === null) {
    warnOn(k, 'pcim_p2pdma_provider', '!p2p');
    return null;
  }
  // BAR 6 (the ROM) is memory too but outside the kernel's mem[PCI_STD_NUM_BARS]; treated as missing.
  return st.mem?.[bar] ?? null;
}

/** newest `pci_p2pdma_setup_pool()`: create the pool (and the sysfs group) unless it exists. */
function pciP2pdmaSetupPool(st: P2pdmaState): void {
  if (st.pool) return;
  st.pool = genPoolCreate(PAGE_SHIFT);
}

/**
 * The pagemap free callback (`p2pdma_page_free` 6.2+, `p2pdma_folio_free` 2025+): the last reference
 * to a user-mapped P2P page went away; return that one page to the pool and drop its pgmap reference.
 */
export function p2pdmaPageFree(k: Kernel, page: Page): void {
  const pgmap = page.pgmap;
  const st = pgmap?.provider ? pciP2pdmaOf(k, pgmap.provider.owner) : null;
  if (!st?.pool) throw new Error('BUG: p2pdma_page_free: the provider has no pool');
  const ref = genPoolFreeOwner(st.pool, pfnToVirt(page.pfn), bytes(PAGE_SIZE_N));
  if (ref === null) throw new Error('BUG: p2pdma_page_free: pool chunk without an owner ref');
  percpuRefPut(ref);
}

/** The checks of pci_p2pdma_add_resource() before anything is allocated. @returns the size to add. */
function addResourceChecks(pdev: PciFunction, bar: number, size: bigint, offset: bigint): KResult<bigint> {
  const b = pciMemBar(pdev, bar);
  if (b === null) return err('EINVAL', `${pdev.name}: BAR ${bar} is not a memory BAR`);
  if (offset >= b.size) return err('EINVAL', `${pdev.name}: offset ${hashLlx(offset)} is beyond BAR ${bar}`);
  const sz = size === 0n ? b.size - offset : size;
  // size_t + u64 wraps in C: a huge size can pass this check.
  if (BigInt.asUintN(64, sz + offset) > b.size) {
    return err('EINVAL', `${pdev.name}: ${hashLlx(sz)} bytes at offset ${hashLlx(offset)} exceed BAR ${bar}`);
  }
  return ok(sz);
}

/** Set up the p2pdma state (and pool) the way each profile does; @returns the state and BAR provider. */
function addResourceState(
  k: Kernel,
  pdev: PciFunction,
  bar: number,
): KResult<{ st: P2pdmaState; mem: P2pdmaProvider }> {
  const b = pciMemBar(pdev, bar)!;
  if (!providerProfile(k).perBarProviders) {
    const st = pciP2pdmaOf(k, pdev) ?? pciP2pdmaSetup(k, pdev);
    return ok({ st, mem: { owner: pdev, busOffset: barBusOffset(b), bar } });
  }
  const init = pcimP2pdmaInit(k, pdev);
  if (!init.ok) return init;
  const st = pciP2pdmaOf(k, pdev)!;
  pciP2pdmaSetupPool(st);
  const mem = pcimP2pdmaProvider(k, pdev, bar);
  if (mem === null) {
    warnOn(k, 'pci_p2pdma_add_resource', '!mem');
    return err('EINVAL', `${pdev.name}: no provider for BAR ${bar}`);
  }
  return ok({ st, mem });
}

/**
 * `pci_p2pdma_add_resource(pdev, bar, size, offset)`: give `size` bytes of a BAR from `offset` (size 0:
 * the rest of the BAR) ZONE_DEVICE pages and add them to the provider's pool, unpublished.
 * Preconditions: the device's driver is bound (not being unbound).
 * @returns ok, and logs `added peer-to-peer DMA memory <start>-<end>`; errors in the kernel's order:
 *   EINVAL  the BAR is not a memory BAR;
 *   EINVAL  offset >= BAR length;
 *   EINVAL  size + offset (u64, wrapping) > BAR length;
 *   EOPNOTSUPP (newest) the BARs are not mappable;
 *   ENOMEM / ENXIO / EINVAL / EEXIST from devm_memremap_pages() (mm/memremap.ts: overlap with a
 *          pagemap, System RAM, beyond the direct map, not 2 MiB aligned, subsection present).
 */
export function pciP2pdmaAddResource(
  k: Kernel,
  pdev: PciFunction,
  bar: number,
  size: bigint,
  offset: bigint,
): KResult<void> {
  const checked = addResourceChecks(pdev, bar, BigInt.asUintN(64, size), BigInt.asUintN(64, offset));
  if (!checked.ok) return checked;
  const prev = pciP2pdmaOf(k, pdev);
  if (prev?.devres?.releasing)
    throw new Error(`BUG: pci_p2pdma_add_resource on ${pdev.name} while it is being unbound`);
  const state = addResourceState(k, pdev, bar);
  if (!state.ok) return state;
  const { st, mem } = state.value;
  const b = pciMemBar(pdev, bar)!;
  const start = physAddr(b.cpuStart + BigInt.asUintN(64, offset));
  const pgmap = createDevPagemap(k.mm, {
    type: 'pci-p2pdma',
    start,
    end: physAddr(start + checked.value - 1n),
    ops: providerProfile(k).pgmapFreeOp ? { pageFree: (page: Page) => p2pdmaPageFree(k, page) } : undefined,
    owner: pdev,
    provider: mem,
    nid: pdev.numaNode ?? 0,
  });
  const kaddr = devmMemremapPages(k.mm, pgmap);
  if (!kaddr.ok) return kaddr;
  if (!st.pool) throw new Error('BUG: pci_p2pdma_add_resource without a pool');
  genPoolAddOwner(
    st.pool,
    kaddr.value,
    BigInt.asUintN(64, b.busStart + offset),
    bytes(checked.value),
    pgmap.ref,
  );
  st.devres ??= newDevres();
  st.devres.pagemaps.push(pgmap);
  k.log.devInfo(pdev, `added peer-to-peer DMA memory ${hashLlx(pgmap.start)}-${hashLlx(pgmap.end)}`);
  return ok(undefined);
}

/** Drop the VMA reference of every page of a mapping (munmap / unmap_mapping_range). */
export function p2pmemZapMapping(k: Kernel, m: P2pmemMapping): void {
  if (!m.live) return;
  m.live = false;
  pciP2pdmaOf(k, m.pdev)?.devres?.mappings.delete(m);
  for (const pfn of m.pfns) {
    const page = pfnToPage(k.mm, pfn);
    if (page === null) throw new Error('BUG: a mapped P2P page lost its struct page');
    putPage(k.mm, page);
  }
}

/** How a driver unbind went: done, or blocked in memunmap_pages() waiting for references. */
export interface P2pdmaReleaseResult {
  readonly done: boolean;
  /** The pagemap whose references are still held, when blocked. */
  readonly waitingOn: DevPagemap | null;
}

/**
 * The devres release of a provider on driver unbind, in the kernel's reverse order of registration:
 * per pagemap, newest first, `pci_p2pdma_unmap_mappings` (newest: removes the `allocate` file, zapping
 * every user mapping) then `devm_memremap_pages_release` (memunmap_pages), and finally
 * `pci_p2pdma_release` (pdev->p2pdma = NULL, map-type cache and pool destroyed, sysfs group removed).
 *
 * memunmap_pages() blocks until every reference on the pagemap is gone: pages still pinned (an O_DIRECT
 * in flight) or kernel allocations not freed keep it, and their struct pages stay valid, while new
 * allocations fail (the ref is dying). The model returns { done: false } then and finishes the rest
 * of the teardown when the last reference drops; `onDone` runs at that point.
 */
export function pciP2pdmaRelease(
  k: Kernel,
  pdev: PciFunction,
  onDone: () => void = () => {},
): P2pdmaReleaseResult {
  const st = pciP2pdmaOf(k, pdev);
  if (st === null) {
    onDone();
    return { done: true, waitingOn: null };
  }
  const dr = st.devres ?? newDevres();
  st.devres = dr;
  if (dr.releasing) throw new Error(`BUG: ${pdev.name} is already being unbound`);
  dr.releasing = true;
  const todo = [...dr.pagemaps].reverse();
  let waitingOn: DevPagemap | null = null;
  let finished = false;
  const step = (): void => {
    for (let p = todo.shift(); p !== undefined; p = todo.shift()) {
      if (providerProfile(k).allocateFile && !dr.allocateRemoved) {
        dr.allocateRemoved = true;
        for (const m of [...dr.mappings]) p2pmemZapMapping(k, m);
      }
      const pgmap = p;
      // The callback resumes the teardown only when memunmap_pages() had to wait for this pagemap.
      const resume = (): void => {
        if (waitingOn !== pgmap) return;
        waitingOn = null;
        step();
      };
      if (memunmapPages(k.mm, p, resume) === 'waiting') {
        waitingOn = p;
        return;
      }
    }
    k.p2p.p2pdma.delete(pdev.index);
    st.mapTypes.clear();
    if (st.pool) genPoolDestroy(st.pool);
    finished = true;
    onDone();
  };
  step();
  return { done: finished, waitingOn };
}
