// The general-purpose special-memory allocator of lib/genalloc.c (`struct gen_pool`), as P2PDMA uses
// it for the memory of a PCI BAR.
//
// A pool is a list of chunks. Each chunk covers a virtual range [start_addr, end_addr], carries the
// "physical" address of its first byte (for P2P memory this is the PCI BUS address, which is why
// `pci_p2pmem_virt_to_bus()` is just `gen_pool_virt_to_phys()`), an owner cookie (P2P: the pgmap's
// percpu ref) and a bitmap with one bit per 2^min_alloc_order bytes. The kernel adds a chunk at the
// HEAD of the list (list_add_rcu), so the newest chunk is searched first.
//
//   chunk:  start_addr                                                end_addr
//           |  bit 0  |  bit 1  |  bit 2  |  ...  |  bit nbits-1  |
//           granule = 1 << min_alloc_order bytes (PAGE_SIZE for P2P)
//
// The bitmap is stored as a sorted list of free bit extents; an allocation takes the first extent
// long enough (gen_pool_first_fit, i.e. bitmap_find_next_zero_area with no alignment). Frees may
// return any part of an allocation (P2PDMA returns pages one at a time). Freeing bits that are not
// allocated, or memory outside every chunk, is a kernel BUG() and throws here.

import { type Bytes, bytes, U64_MASK } from '../../hw/addr.js';

/** One `struct gen_pool_chunk`. Addresses are plain 64-bit values (the kernel's unsigned long). */
export interface GenPoolChunk<O> {
  /** `start_addr`: virtual address of the first byte. */
  readonly startAddr: bigint;
  /** `end_addr`: virtual address of the last byte (start + size - 1). */
  readonly endAddr: bigint;
  /** `phys_addr`: what gen_pool_virt_to_phys() adds the offset to (a bus address for P2P). */
  readonly physAddr: bigint;
  /** `owner`: the cookie gen_pool_alloc_owner() hands back (P2P: the pgmap's percpu ref). */
  readonly owner: O | null;
  /** `avail`: free bytes (granule multiples). */
  avail: bigint;
  /** Bits in the bitmap: size >> min_alloc_order. */
  readonly nbits: number;
  /** Free bit extents, sorted by start, disjoint and never adjacent. */
  readonly freeStart: number[];
  readonly freeLen: number[];
}

/** `struct gen_pool` with the default first-fit algorithm. */
export interface GenPool<O> {
  readonly minAllocOrder: number;
  /** Chunks in list order: the most recently added first. */
  readonly chunks: GenPoolChunk<O>[];
}

/** What gen_pool_virt_to_phys() returns for an address outside every chunk: `(phys_addr_t)-1`. */
export const GEN_POOL_NO_PHYS: bigint = U64_MASK;

/** `gen_pool_create(min_alloc_order, nid)`: an empty pool. */
export function genPoolCreate<O>(minAllocOrder: number): GenPool<O> {
  if (!Number.isInteger(minAllocOrder) || minAllocOrder < 0 || minAllocOrder > 62) {
    throw new Error(`BUG: gen_pool_create: min_alloc_order ${minAllocOrder}`);
  }
  return { minAllocOrder, chunks: [] };
}

/**
 * `gen_pool_add_owner()`: add `size` bytes at virtual `virt` whose first byte has address `phys`.
 * The chunk goes to the head of the list. The model never fails the chunk allocation (-ENOMEM).
 * Preconditions: size > 0 and the range does not wrap.
 */
export function genPoolAddOwner<O>(
  pool: GenPool<O>,
  virt: bigint,
  phys: bigint,
  size: Bytes,
  owner: O | null,
): void {
  if (size <= 0n || virt + size - 1n > U64_MASK) throw new Error(`BUG: gen_pool_add_owner: size ${size}`);
  const nbits = Number(size >> BigInt(pool.minAllocOrder));
  pool.chunks.unshift({
    startAddr: virt,
    endAddr: virt + size - 1n,
    physAddr: phys,
    owner,
    avail: size,
    nbits,
    freeStart: nbits > 0 ? [0] : [],
    freeLen: nbits > 0 ? [nbits] : [],
  });
}

/** `gen_pool_add_virt()`: gen_pool_add_owner() without an owner. */
export const genPoolAddVirt = <O>(pool: GenPool<O>, virt: bigint, phys: bigint, size: Bytes): void =>
  genPoolAddOwner(pool, virt, phys, size, null);

/** Bits needed for `size` bytes: rounded up to the granule. */
const bitsFor = (pool: GenPool<unknown>, size: bigint): number => {
  const g = 1n << BigInt(pool.minAllocOrder);
  return Number((size + g - 1n) >> BigInt(pool.minAllocOrder));
};

/** Take `n` bits at the start of free extent `i`. */
function takeBits(c: GenPoolChunk<unknown>, i: number, n: number): number {
  const start = c.freeStart[i]!;
  const len = c.freeLen[i]!;
  if (len === n) {
    c.freeStart.splice(i, 1);
    c.freeLen.splice(i, 1);
  } else {
    c.freeStart[i] = start + n;
    c.freeLen[i] = len - n;
  }
  return start;
}

export interface GenPoolAllocation<O> {
  /** Virtual address of the allocation. */
  readonly addr: bigint;
  /** The owner cookie of the chunk it came from. */
  readonly owner: O | null;
}

/**
 * `gen_pool_alloc_owner()`: first fit over the chunks in list order. A chunk is skipped when the
 * requested (unrounded) size exceeds its `avail`, as the kernel does; the allocation itself is rounded
 * up to the granule.
 * @returns the address and owner, or null when `size` is 0 or no chunk has room (the kernel returns 0).
 */
export function genPoolAllocOwner<O>(pool: GenPool<O>, size: Bytes): GenPoolAllocation<O> | null {
  if (size === 0n) return null;
  const nbits = bitsFor(pool, size);
  for (const c of pool.chunks) {
    if (size > c.avail) continue;
    for (let i = 0; i < c.freeLen.length; i++) {
      if (c.freeLen[i]! < nbits) continue;
      const bit = takeBits(c, i, nbits);
      c.avail -= BigInt(nbits) << BigInt(pool.minAllocOrder);
      return { addr: c.startAddr + (BigInt(bit) << BigInt(pool.minAllocOrder)), owner: c.owner };
    }
  }
  return null;
}

/** `gen_pool_alloc()`: the address only. @returns null on failure (the kernel's 0). */
export const genPoolAlloc = <O>(pool: GenPool<O>, size: Bytes): bigint | null =>
  genPoolAllocOwner(pool, size)?.addr ?? null;

/** Give bits [bit, bit + n) back; throws when any of them is already free (the kernel's BUG_ON(remain)). */
function returnBits(c: GenPoolChunk<unknown>, bit: number, n: number): void {
  const end = bit + n;
  if (end > c.nbits) throw new Error('BUG: gen_pool_free: range runs past the chunk bitmap');
  // Index of the first free extent starting after `bit`.
  let i = 0;
  while (i < c.freeStart.length && c.freeStart[i]! <= bit) i++;
  const prev = i - 1;
  if (prev >= 0 && c.freeStart[prev]! + c.freeLen[prev]! > bit) {
    throw new Error(`BUG: gen_pool_free: bit ${bit} is not allocated (double free)`);
  }
  if (i < c.freeStart.length && c.freeStart[i]! < end) {
    throw new Error(`BUG: gen_pool_free: bit ${c.freeStart[i]} is not allocated (double free)`);
  }
  const joinPrev = prev >= 0 && c.freeStart[prev]! + c.freeLen[prev]! === bit;
  const joinNext = i < c.freeStart.length && c.freeStart[i] === end;
  if (joinPrev && joinNext) {
    c.freeLen[prev] = c.freeLen[prev]! + n + c.freeLen[i]!;
    c.freeStart.splice(i, 1);
    c.freeLen.splice(i, 1);
  } else if (joinPrev) {
    c.freeLen[prev] = c.freeLen[prev]! + n;
  } else if (joinNext) {
    c.freeStart[i] = bit;
    c.freeLen[i] = c.freeLen[i]! + n;
  } else {
    c.freeStart.splice(i, 0, bit);
    c.freeLen.splice(i, 0, n);
  }
}

/**
 * `gen_pool_free_owner()`: return `size` bytes at `addr` (rounded up to the granule) to their chunk.
 * @returns the chunk's owner cookie.
 * @throws (kernel BUG) when `addr` is in no chunk, the range runs past the chunk, or a bit is not set.
 */
export function genPoolFreeOwner<O>(pool: GenPool<O>, addr: bigint, size: Bytes): O | null {
  const nbits = bitsFor(pool, size);
  for (const c of pool.chunks) {
    if (addr < c.startAddr || addr > c.endAddr) continue;
    if (addr + size - 1n > c.endAddr) throw new Error('BUG: gen_pool_free: range runs past its chunk');
    returnBits(c, Number((addr - c.startAddr) >> BigInt(pool.minAllocOrder)), nbits);
    c.avail += BigInt(nbits) << BigInt(pool.minAllocOrder);
    return c.owner;
  }
  throw new Error(`BUG: gen_pool_free: 0x${addr.toString(16)} is in no chunk of the pool`);
}

/** `gen_pool_free()`. */
export const genPoolFree = <O>(pool: GenPool<O>, addr: bigint, size: Bytes): void => {
  genPoolFreeOwner(pool, addr, size);
};

/**
 * `gen_pool_virt_to_phys()`: the chunk's phys address plus the offset of `addr` in it.
 * @returns GEN_POOL_NO_PHYS (`(phys_addr_t)-1`) when no chunk holds `addr`.
 */
export function genPoolVirtToPhys<O>(pool: GenPool<O>, addr: bigint): bigint {
  for (const c of pool.chunks) {
    if (addr >= c.startAddr && addr <= c.endAddr)
      return BigInt.asUintN(64, c.physAddr + (addr - c.startAddr));
  }
  return GEN_POOL_NO_PHYS;
}

/** `addr_in_gen_pool()`: is [start, start + size) inside one chunk? */
export function addrInGenPool<O>(pool: GenPool<O>, start: bigint, size: Bytes): boolean {
  const end = start + size - 1n;
  return pool.chunks.some((c) => start >= c.startAddr && start <= c.endAddr && end <= c.endAddr);
}

/** `gen_pool_size()`: bytes managed by the pool (sum of chunk sizes). */
export const genPoolSize = <O>(pool: GenPool<O>): Bytes =>
  bytes(pool.chunks.reduce((s, c) => s + (c.endAddr - c.startAddr + 1n), 0n));

/** `gen_pool_avail()`: free bytes. */
export const genPoolAvail = <O>(pool: GenPool<O>): Bytes =>
  bytes(pool.chunks.reduce((s, c) => s + c.avail, 0n));

/**
 * `gen_pool_destroy()`: drop every chunk. The kernel BUG()s when any chunk still has an allocation.
 * @throws when memory is still allocated.
 */
export function genPoolDestroy<O>(pool: GenPool<O>): void {
  for (const c of pool.chunks) {
    const free = c.freeLen.reduce((s, n) => s + n, 0);
    if (free !== c.nbits) throw new Error('BUG: gen_pool_destroy: the pool still has allocations');
  }
  pool.chunks.length = 0;
}
