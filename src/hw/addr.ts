// Branded address and size types shared by every layer.
//
// A CPU physical address, a PCI bus address, a DMA address and an IOVA are all 64-bit numbers in the
// kernel, and mixing them up is the classic P2PDMA bug (using the CPU physical address of a BAR where
// the peer needs its bus address). Each is a distinct branded bigint here, so the type checker refuses
// that mix-up. Counts and indices stay `number`.

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** CPU physical address (what the CPU puts on its memory bus; `phys_addr_t`). */
export type PhysAddr = Brand<bigint, 'PhysAddr'>;
/** PCI bus address (what a PCI device decodes; `pci_bus_addr_t`). */
export type BusAddr = Brand<bigint, 'BusAddr'>;
/** Address handed to a device for DMA (`dma_addr_t`): a bus address, an IOVA or a direct-mapped address. */
export type DmaAddr = Brand<bigint, 'DmaAddr'>;
/** A size or length in bytes. */
export type Bytes = Brand<bigint, 'Bytes'>;

export const U64_MASK = (1n << 64n) - 1n;

export const physAddr = (v: bigint | number): PhysAddr => BigInt.asUintN(64, BigInt(v)) as PhysAddr;
export const busAddr = (v: bigint | number): BusAddr => BigInt.asUintN(64, BigInt(v)) as BusAddr;
export const dmaAddr = (v: bigint | number): DmaAddr => BigInt.asUintN(64, BigInt(v)) as DmaAddr;
export const bytes = (v: bigint | number): Bytes => BigInt.asUintN(64, BigInt(v)) as Bytes;

/** Wrapping 64-bit addition, as C does on u64. */
export const add64 = (a: bigint, b: bigint): bigint => BigInt.asUintN(64, a + b);
/** Wrapping 64-bit subtraction, as C does on u64. */
export const sub64 = (a: bigint, b: bigint): bigint => BigInt.asUintN(64, a - b);

/** The one place addresses are formatted for people and JSON: `0x` and lower-case hex. */
export const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

/** Format with a fixed number of hex digits (`%#018llx`-style when width is 16). */
export const hexPad = (v: bigint | number, width: number): string =>
  `0x${v.toString(16).padStart(width, '0')}`;

export const KiB = 1024n;
export const MiB = 1024n * KiB;
export const GiB = 1024n * MiB;
export const TiB = 1024n * GiB;
export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
export const PAGE_SIZE_N = 4096n;
