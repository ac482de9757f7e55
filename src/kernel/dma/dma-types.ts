// The DMA-mapping API's shared vocabulary: directions, attributes, the error cookie and masks.
//
// Mirrors include/linux/dma-direction.h and include/linux/dma-mapping.h (the DMA_ATTR_* table, the
// DMA_MAPPING_ERROR cookie, DMA_BIT_MASK). Directions are a string-literal union; the kernel's enum
// numbers are kept beside them for reports and for comparing with recorded kernel output.

import { type DmaAddr, dmaAddr, type PhysAddr, U64_MASK } from '../../hw/addr.js';

/** `enum dma_data_direction` as a value set. */
export type DmaDirection = 'bidirectional' | 'to-device' | 'from-device' | 'none';

/** The kernel's numbers for each direction (`DMA_BIDIRECTIONAL` = 0 ... `DMA_NONE` = 3). */
export const DMA_DIRECTION_VALUE: Readonly<Record<DmaDirection, number>> = {
  bidirectional: 0,
  'to-device': 1,
  'from-device': 2,
  none: 3,
};

export const DMA_BIDIRECTIONAL: DmaDirection = 'bidirectional';
export const DMA_TO_DEVICE: DmaDirection = 'to-device';
export const DMA_FROM_DEVICE: DmaDirection = 'from-device';
export const DMA_NONE: DmaDirection = 'none';

/** Direction from the kernel's number; undefined for numbers outside the enum. */
export function dmaDirectionFromValue(n: number): DmaDirection | undefined {
  for (const [k, v] of Object.entries(DMA_DIRECTION_VALUE)) if (v === n) return k as DmaDirection;
  return undefined;
}

/** `valid_dma_direction()`: bidirectional, to-device or from-device (not none). */
export const validDmaDirection = (dir: DmaDirection): boolean => dir !== 'none';

// `unsigned long attrs` bits (include/linux/dma-mapping.h). Bit 0 and bit 3 are unused upstream.
export const DMA_ATTR_WEAK_ORDERING = 1 << 1;
export const DMA_ATTR_WRITE_COMBINE = 1 << 2;
export const DMA_ATTR_NO_KERNEL_MAPPING = 1 << 4;
export const DMA_ATTR_SKIP_CPU_SYNC = 1 << 5;
export const DMA_ATTR_FORCE_CONTIGUOUS = 1 << 6;
export const DMA_ATTR_ALLOC_SINGLE_PAGES = 1 << 7;
export const DMA_ATTR_NO_WARN = 1 << 8;
export const DMA_ATTR_PRIVILEGED = 1 << 9;
/** 6.18+: the address is MMIO (no struct page, never bounced, no cache maintenance). */
export const DMA_ATTR_MMIO = 1 << 10;
/** 2026: skip the dma-debug cacheline overlap check. */
export const DMA_ATTR_DEBUGGING_IGNORE_CACHELINES = 1 << 11;
/** 2026: the mapping must be coherent (no swiotlb, no cache flushing). */
export const DMA_ATTR_REQUIRE_COHERENT = 1 << 12;
/** Proposed 2026: shared (decrypted) memory of a confidential-computing guest. */
export const DMA_ATTR_CC_SHARED = 1 << 13;

/** Names of the attribute bits, for reports (`attrs` printed as `SKIP_CPU_SYNC|NO_WARN`). */
export const DMA_ATTR_NAMES: Readonly<Record<number, string>> = {
  [DMA_ATTR_WEAK_ORDERING]: 'WEAK_ORDERING',
  [DMA_ATTR_WRITE_COMBINE]: 'WRITE_COMBINE',
  [DMA_ATTR_NO_KERNEL_MAPPING]: 'NO_KERNEL_MAPPING',
  [DMA_ATTR_SKIP_CPU_SYNC]: 'SKIP_CPU_SYNC',
  [DMA_ATTR_FORCE_CONTIGUOUS]: 'FORCE_CONTIGUOUS',
  [DMA_ATTR_ALLOC_SINGLE_PAGES]: 'ALLOC_SINGLE_PAGES',
  [DMA_ATTR_NO_WARN]: 'NO_WARN',
  [DMA_ATTR_PRIVILEGED]: 'PRIVILEGED',
  [DMA_ATTR_MMIO]: 'MMIO',
  [DMA_ATTR_DEBUGGING_IGNORE_CACHELINES]: 'DEBUGGING_IGNORE_CACHELINES',
  [DMA_ATTR_REQUIRE_COHERENT]: 'REQUIRE_COHERENT',
  [DMA_ATTR_CC_SHARED]: 'CC_SHARED',
};

/** Attribute bits as `A|B` (bits without a name print as hex); `0` for none. */
export function dmaAttrsToString(attrs: number): string {
  if (attrs === 0) return '0';
  const parts: string[] = [];
  for (let bit = 0; bit < 31; bit++) {
    const v = 1 << bit;
    if ((attrs & v) !== 0) parts.push(DMA_ATTR_NAMES[v] ?? `0x${v.toString(16)}`);
  }
  return parts.join('|');
}

/** `DMA_MAPPING_ERROR`: `~(dma_addr_t)0`, the cookie every failed single mapping returns. */
export const DMA_MAPPING_ERROR: DmaAddr = dmaAddr(U64_MASK);

/** `dma_mapping_error()`: true for the error cookie (the kernel returns -ENOMEM for it). */
export const dmaMappingError = (addr: DmaAddr): boolean => addr === DMA_MAPPING_ERROR;

/**
 * `DMA_BIT_MASK(n)`: the low n bits set; n = 64 is all ones.
 * Precondition: 0 <= n <= 64 (the C macro is undefined outside; here it throws).
 */
export function DMA_BIT_MASK(n: number): bigint {
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new RangeError(`DMA_BIT_MASK(${n})`);
  return n === 64 ? U64_MASK : (1n << BigInt(n)) - 1n;
}

/**
 * Byte access to simulated physical memory, as the DMA layers need it (swiotlb bounces real bytes).
 * The memory model implements this; tests use a sparse map. Reads of never-written bytes return 0.
 */
export interface PhysMemoryAccessor {
  /** Copy `len` bytes starting at `phys` (a fresh array the caller may keep). */
  read(phys: PhysAddr, len: number): Uint8Array;
  /** Store `data` at `phys`. */
  write(phys: PhysAddr, data: Uint8Array): void;
}
