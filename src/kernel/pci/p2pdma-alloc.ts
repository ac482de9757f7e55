// The P2PDMA memory API of drivers/pci/p2pdma.c: allocate and free provider memory, translate it to
// bus addresses, build one-entry scatterlists, publish it, and find the closest published provider
// for a set of clients (pci_p2pmem_find_many).
//
// Allocations come from the provider's gen_pool (first fit, page granules). Each one takes a live
// reference on the pagemap that owns the chunk, so a driver unbind waits for it (p2pdma-provider.ts).

import { type BusAddr, busAddr, bytes, PAGE_SIZE_N } from '../../hw/addr.js';
import type { PciFunction } from '../../hw/pci.js';
import type { Kernel } from '../kernel.js';
import { forEachSg, newSgTable, type Scatterlist, sgAllocTable, sgSetPage } from '../lib/scatterlist.js';
import { type KVirtAddr, kvirtAddr, pfnToVirt, virtToPfn } from '../mm/direct-map.js';
import { genPoolAllocOwner, genPoolFree, genPoolFreeOwner, genPoolVirtToPhys } from '../mm/genalloc.js';
import { percpuRefPut, percpuRefTrygetLive } from '../mm/percpu-ref.js';
import { type P2pdmaState, pciP2pdmaDistanceMany } from './p2pdma.js';
import { pciP2pdmaOf, providerProfile } from './p2pdma-provider.js';

/** The pool of a provider, or a thrown "NULL pointer dereference" where the kernel would oops. */
function poolOf(st: P2pdmaState, what: string) {
  if (!st.pool)
    throw new Error(
      `BUG: NULL pointer dereference: ${what} on a provider without a pool (pcim_p2pdma_init only)`,
    );
  return st.pool;
}

/**
 * `pci_alloc_p2pmem()`: `size` bytes (rounded up to pages) of the provider's memory.
 * Precondition (newest): the provider has a pool (pci_p2pdma_add_resource ran); the kernel oopses
 * otherwise, and so does this model (throws).
 * @returns the kernel virtual address, or null when the device has no p2pdma state, the pool has no
 *   room (or size is 0), or the pagemap is being torn down (percpu_ref_tryget_live failed).
 */
export function pciAllocP2pmem(k: Kernel, pdev: PciFunction, size: bigint): KVirtAddr | null {
  const st = pciP2pdmaOf(k, pdev);
  if (st === null) return null;
  const pool = poolOf(st, 'pci_alloc_p2pmem');
  const a = genPoolAllocOwner(pool, bytes(size));
  if (a === null) return null;
  if (a.owner === null || !percpuRefTrygetLive(a.owner)) {
    genPoolFree(pool, a.addr, bytes(size));
    return null;
  }
  return kvirtAddr(a.addr);
}

/**
 * `pci_free_p2pmem()`: give back `size` bytes at `addr` and drop the pagemap reference.
 * @throws where the kernel crashes or BUG()s: no p2pdma state, an address outside the pool, a double free.
 */
export function pciFreeP2pmem(k: Kernel, pdev: PciFunction, addr: KVirtAddr, size: bigint): void {
  const st = pciP2pdmaOf(k, pdev);
  if (st === null)
    throw new Error(`BUG: NULL pointer dereference: pci_free_p2pmem on ${pdev.name} without p2pdma`);
  const ref = genPoolFreeOwner(poolOf(st, 'pci_free_p2pmem'), addr, bytes(size));
  if (ref === null) throw new Error('BUG: pci_free_p2pmem: pool chunk without an owner ref');
  percpuRefPut(ref);
}

/**
 * `pci_p2pmem_virt_to_bus()`: the PCI bus address of provider memory (the pool's "phys" is the bus
 * address, so this is gen_pool_virt_to_phys()).
 * @returns 0 for a null address or a device without p2pdma state; `(phys_addr_t)-1` for an address
 *   outside the pool.
 */
export function pciP2pmemVirtToBus(k: Kernel, pdev: PciFunction, addr: KVirtAddr | null): BusAddr {
  if (addr === null || addr === 0n) return busAddr(0);
  const st = pciP2pdmaOf(k, pdev);
  if (st === null) return busAddr(0);
  return busAddr(genPoolVirtToPhys(poolOf(st, 'pci_p2pmem_virt_to_bus'), addr));
}

/** What pci_p2pmem_alloc_sgl() hands back: the list and `*nents`. */
export interface P2pmemSgl {
  readonly sgl: Scatterlist;
  readonly nents: number;
}

/**
 * `pci_p2pmem_alloc_sgl()`: allocate `length` bytes (a u32) and describe them with a one-entry
 * scatterlist (`sg_set_buf`: the first page, the offset in it, the length).
 * @returns the list with nents 1, or null when the allocation failed.
 */
export function pciP2pmemAllocSgl(k: Kernel, pdev: PciFunction, length: number): P2pmemSgl | null {
  const sgt = newSgTable();
  if (!sgAllocTable(sgt, 1, { version: k.version }).ok || sgt.sgl === null) return null;
  const addr = pciAllocP2pmem(k, pdev, BigInt(length >>> 0));
  if (addr === null) return null;
  const pfn = virtToPfn(addr);
  sgSetPage(sgt.sgl, pfn, length >>> 0, Number(addr & (PAGE_SIZE_N - 1n)));
  return { sgl: sgt.sgl, nents: 1 };
}

/** `pci_p2pmem_free_sgl()`: free every entry's memory (`sg_virt()`, `sg->length`), then the list. */
export function pciP2pmemFreeSgl(k: Kernel, pdev: PciFunction, sgl: Scatterlist): void {
  for (const sg of forEachSg(sgl, 0x7fff_ffff)) {
    if (sg.pfn === null) break;
    pciFreeP2pmem(k, pdev, kvirtAddr(pfnToVirt(sg.pfn) + BigInt(sg.offset)), BigInt(sg.length));
  }
}

/** `pci_p2pmem_publish()`: offer (or withdraw) the memory to other drivers; no-op without p2pdma state. */
export function pciP2pmemPublish(k: Kernel, pdev: PciFunction, publish: boolean): void {
  const st = pciP2pdmaOf(k, pdev);
  if (st !== null) st.published = publish;
}

/**
 * `pci_has_p2pmem()`: has the device published memory? 6.1 (exported): state and published. Newest
 * (static): also a pool, since providers made by pcim_p2pdma_init() alone have none.
 */
export function pciHasP2pmem(k: Kernel, pdev: PciFunction): boolean {
  const st = pciP2pdmaOf(k, pdev);
  if (st === null || !st.published) return false;
  return !providerProfile(k).hasP2pmemNeedsPool || (st.pool ?? null) !== null;
}

/** `PAGE_SIZE / sizeof(struct pci_dev *)`: candidates kept at the closest distance. */
export const P2PMEM_FIND_MAX_DEVS = 4096 / 8;

/**
 * `pci_p2pmem_find_many()`: the published provider closest to all clients (summed distance of
 * pci_p2pdma_distance_many, non-verbose), walking devices in `for_each_pci_dev` order. Ties are kept up
 * to 512 candidates (later ones are ignored) and one is drawn uniformly with the kernel PRNG
 * (`prandom_u32_max` 6.1, `get_random_u32_below` newest).
 * @returns the provider, or null when no published provider reaches every client.
 */
export function pciP2pmemFindMany(k: Kernel, clients: readonly PciFunction[]): PciFunction | null {
  let closest = Number.MAX_SAFE_INTEGER;
  const best: PciFunction[] = [];
  for (const pdev of k.machine.functions) {
    if (!pciHasP2pmem(k, pdev)) continue;
    const d = pciP2pdmaDistanceMany(k.p2p, pdev, clients, false);
    if (d < 0 || d > closest) continue;
    if (d === closest && best.length >= P2PMEM_FIND_MAX_DEVS) continue;
    if (d < closest) {
      best.length = 0;
      closest = d;
    }
    best.push(pdev);
  }
  if (best.length === 0) return null;
  return best[k.engine.prng.below(best.length)]!;
}

/** `pci_p2pmem_find()`: the one-client wrapper. */
export const pciP2pmemFind = (k: Kernel, client: PciFunction): PciFunction | null =>
  pciP2pmemFindMany(k, [client]);
