// Kernel virtual addresses of the direct map (x86-64 `__va()` / `__pa()`, arch/x86/include/asm/page.h).
//
// memremap_pages() gives ZONE_DEVICE memory that the CPU can reach (P2PDMA BARs included) a linear
// mapping like RAM's and returns `__va(range.start)`; so a P2P allocation's kernel address is
// PAGE_OFFSET + its CPU physical address, and `virt_to_page()`/`page_to_virt()` work on it. (The
// kernel does not use vmalloc space for these BARs.) PAGE_OFFSET is the 4-level paging default
// without KASLR; the direct map spans 2^MAX_PHYSMEM_BITS bytes.

import { PAGE_SHIFT, type PhysAddr, physAddr } from '../../hw/addr.js';

declare const kvirtBrand: unique symbol;
/** A kernel virtual address (`void *`, `unsigned long` of kernel space). */
export type KVirtAddr = bigint & { readonly [kvirtBrand]: 'KVirtAddr' };

export const kvirtAddr = (v: bigint): KVirtAddr => BigInt.asUintN(64, v) as KVirtAddr;

/** `PAGE_OFFSET` with 4-level paging and no KASLR (`__PAGE_OFFSET_BASE_L4`). */
export const PAGE_OFFSET: KVirtAddr = kvirtAddr(0xffff_8880_0000_0000n);
/** `MAX_PHYSMEM_BITS` with 4-level paging. */
export const MAX_PHYSMEM_BITS = 46;
const DIRECT_MAP_END = PAGE_OFFSET + (1n << BigInt(MAX_PHYSMEM_BITS));

/** `__va()`: the direct-map address of a physical address. @throws beyond MAX_PHYSMEM_BITS. */
export function physToVirt(phys: PhysAddr): KVirtAddr {
  if (phys >> BigInt(MAX_PHYSMEM_BITS) !== 0n)
    throw new Error(`BUG: __va(0x${phys.toString(16)}) beyond the direct map`);
  return kvirtAddr(PAGE_OFFSET + phys);
}

/** Is `v` inside the direct map? */
export const isDirectMapAddr = (v: bigint): boolean => v >= PAGE_OFFSET && v < DIRECT_MAP_END;

/** `__pa()`: the physical address of a direct-map address. @throws for any other address (a bug). */
export function virtToPhys(v: KVirtAddr): PhysAddr {
  if (!isDirectMapAddr(v)) throw new Error(`BUG: __pa(0x${v.toString(16)}) is not a direct-map address`);
  return physAddr(v - PAGE_OFFSET);
}

/** The pfn of a direct-map address (`virt_to_pfn()`). */
export const virtToPfn = (v: KVirtAddr): number => Number(virtToPhys(v) >> BigInt(PAGE_SHIFT));

/** The direct-map address of a pfn (`page_to_virt()` / `pfn_to_kaddr()`). */
export const pfnToVirt = (pfn: number): KVirtAddr => physToVirt(physAddr(BigInt(pfn) << BigInt(PAGE_SHIFT)));
