// The page-size choice of the generic IOMMU API (drivers/iommu/iommu.c `iommu_pgsize()`): the largest
// page size the domain supports that both the IOVA and the physical address are aligned to and that
// fits the remaining length, plus how many such pages to map in one call.

import { type Bytes, bytes, hex } from '../../hw/addr.js';
import type { IommuDomain } from './iommu.js';

/** `__fls`: index of the highest set bit (x > 0). */
function fls(x: bigint): number {
  let n = 0;
  let v = x;
  while (v >= 0x1_0000_0000n) {
    v >>= 32n;
    n += 32;
  }
  return n + 31 - Math.clz32(Number(v));
}
/** `__ffs`: index of the lowest set bit (x > 0). */
const ffs = (x: bigint): number => fls(x & -x);
const genmask = (h: number): bigint => (1n << BigInt(h + 1)) - 1n;

/** Smallest page size of a domain (`1 << __ffs(pgsize_bitmap)`). */
export const iommuMinPagesz = (d: Pick<IommuDomain, 'pgsizeBitmap'>): bigint =>
  d.pgsizeBitmap === 0n ? 1n << BigInt(ffs(d.pgsizeBitmap)) : pgsizeInfo(d.pgsizeBitmap).min;

interface PgsizeInfo {
  readonly bitmap: bigint;
  readonly min: Bytes;
  readonly minMask: bigint;
  readonly minShift: bigint;
  /** The second-smallest page size, or 2^64 when there is only one. */
  readonly second: bigint;
}
let lastPgsizeInfo: PgsizeInfo | null = null;

/** The smallest and second-smallest page sizes of a bitmap (the last bitmap asked for is cached). */
function pgsizeInfo(bitmap: bigint): PgsizeInfo {
  if (lastPgsizeInfo !== null && lastPgsizeInfo.bitmap === bitmap) return lastPgsizeInfo;
  const min = bitmap === 0n ? 0n : bitmap & -bitmap;
  const rest = bitmap & ~min;
  lastPgsizeInfo = {
    bitmap,
    min: bytes(min),
    minMask: min === 0n ? 0n : min - 1n,
    minShift: BigInt(min === 0n ? 0 : ffs(min)),
    second: rest === 0n ? 1n << 64n : rest & -rest,
  };
  return lastPgsizeInfo;
}

/**
 * `iommu_pgsize`: the largest supported page size that `size` and the alignment of `iova | paddr`
 * allow, and how many of them to map before a larger size becomes possible.
 * Precondition: some page size fits (size and addresses aligned to the smallest); otherwise it throws,
 * as the kernel's BUG_ON does.
 */
export function iommuPgsize(
  d: Pick<IommuDomain, 'pgsizeBitmap'>,
  iova: bigint,
  paddr: bigint,
  size: bigint,
): { pgsize: Bytes; count: number } {
  // Fast path, same answer: an aligned size below the second-smallest page size can only be mapped
  // with the smallest pages (the hot case of dma-iommu's 4 KiB mappings).
  const info = pgsizeInfo(d.pgsizeBitmap);
  if (info.min !== 0n && size > 0n && size < info.second && ((paddr | iova | size) & info.minMask) === 0n)
    return { pgsize: info.min, count: Number(size >> info.minShift) };
  const addrMerge = paddr | iova;
  let pgsizes = d.pgsizeBitmap & genmask(fls(size));
  if (addrMerge !== 0n) pgsizes &= genmask(ffs(addrMerge));
  if (pgsizes === 0n) throw new Error(`iommu_pgsize: no page size for iova ${hex(iova)} size ${hex(size)}`);
  const idx = fls(pgsizes);
  const pgsize = 1n << BigInt(idx);
  let span = size;
  const bigger = d.pgsizeBitmap & ~genmask(idx);
  if (bigger !== 0n) {
    const next = 1n << BigInt(ffs(bigger));
    // A bigger page helps only if iova and paddr sit at the same offset inside it.
    if (((iova ^ paddr) & (next - 1n)) === 0n) {
      const offset = next - (addrMerge & (next - 1n));
      if (offset + next <= size) span = offset;
    }
  }
  return { pgsize: bytes(pgsize), count: Number(span >> BigInt(idx)) };
}
