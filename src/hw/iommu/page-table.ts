// The I/O page table of a simulated IOMMU: a 4-level radix tree of 512-entry tables (4 KiB granule,
// 48-bit input address), with 4 KiB pages at level 3 and 2 MiB / 1 GiB blocks at levels 2 / 1.
//
// The format and its update rules are those of the ARM long-descriptor table that
// drivers/iommu/io-pgtable-arm.c builds (the same shape as Intel VT-d second-level and AMD v2 tables).
// Permissions are the stage-2 kind (independent read and write bits, as VT-d and AMD have too):
//
//   iova bits  47..39   38..30   29..21   20..12   11..0
//              level 0  level 1  level 2  level 3  offset
//                       1G block 2M block 4K page
//
// Rules modelled from io-pgtable-arm.c (newest mainline):
// - map_pages fills at most up to the end of one table per call (the caller loops, as iommu_map does);
// - a leaf already present where a new leaf goes, or a block on the way down, is -EEXIST ("we require an
//   unmap first"); a table where a block goes is torn down first (its leaves go with it) and the walk
//   caches for that range are flushed at once (`onFlushWalk`);
// - iova beyond the input size or paddr beyond the output size is -ERANGE; no read and no write is
//   -EINVAL (kernels before the 2024 change returned 0 and mapped nothing);
// - unmapping part of a block is refused: WARN "Unmap of a partial large IOPTE is not allowed", 0 bytes
//   (the old split-on-unmap behaviour was removed from mainline); unmapping a hole stops there;
// - tables emptied by unmap are not freed (only a block-sized unmap over a table frees it).
//
// Storage: each table is a Uint32Array of 1024 words (entry i = low word 2i, high word 2i+1), allocated
// on first use; a table entry holds the table's index as if it were the next table's page address.

/** Errno names this code returns (a subset of the kernel's; hw does not import the kernel model). */
export type PgtableErrno = 'EINVAL' | 'ERANGE' | 'EEXIST';

/** Access permissions of a leaf entry (stage-2 HAP bits), and execute-never. */
export interface PteProt {
  readonly read: boolean;
  readonly write: boolean;
  readonly noexec?: boolean;
}

export interface PgtableMapResult {
  /** Bytes mapped by this call (may be less than asked: one table per call). */
  readonly mappedBytes: bigint;
  readonly errno: PgtableErrno | null;
  /** Text of a WARN the kernel would print, if any. */
  readonly warning: string | null;
}

export interface PgtableUnmapResult {
  readonly unmappedBytes: bigint;
  /** Number of leaf entries of `pgsize` cleared (each is one page for the IOTLB gather). */
  readonly pages: number;
  readonly warning: string | null;
}

/** Result of a hardware table walk for one address. Numbers are exact: addresses are below 2^48. */
export interface PgtableWalk {
  readonly present: boolean;
  /** Table entries read (1..4): what the simulation charges walk latency for. */
  readonly levelsTouched: number;
  /** Level of the leaf (1, 2 or 3), or of the missing entry. */
  readonly level: number;
  /** log2 of the leaf size: 30, 21 or 12. */
  readonly pageShift: number;
  /** IOVA and output address of the start of the leaf. */
  readonly iovaBase: number;
  readonly physBase: number;
  readonly read: boolean;
  readonly write: boolean;
}

export const PT_LEVELS = 4;
export const PT_ENTRIES = 512;
export const SZ_4K = 0x1000n;
export const SZ_2M = 0x200000n;
export const SZ_1G = 0x40000000n;
/** Page sizes the format supports with a 4 KiB granule (`arm_lpae_restrict_pgsizes`). */
export const PT_PGSIZE_BITMAP = SZ_4K | SZ_2M | SZ_1G;

export const PARTIAL_UNMAP_WARNING = 'Unmap of a partial large IOPTE is not allowed';

// Low-word bits of an entry: valid, table (or "page" at level 3), HAP read/write, access flag.
const PTE_VALID = 1 << 0;
const PTE_TABLE = 1 << 1;
const PTE_HAP_READ = 1 << 6;
const PTE_HAP_WRITE = 1 << 7;
const PTE_AF = 1 << 10;
const PTE_ADDR_LO = 0xfffff000;
// High word: output address bits 47..32 and execute-never (bit 54 of the entry).
const PTE_ADDR_HI = 0xffff;
const PTE_XN_HI = 1 << 22;

const TWO32 = 0x100000000;
/** log2 of the block size at each level (level 0 maps nothing directly). */
const LEVEL_SHIFT = [39, 30, 21, 12] as const;
const LEVEL_SIZE = LEVEL_SHIFT.map((s) => 2 ** s);

export interface IoPageTableConfig {
  /** Input (IOVA) address bits; at most 48. */
  readonly ias?: number;
  /** Output (physical) address bits; at most 48. */
  readonly oas?: number;
  /** Called when a table is torn down: the walk caches (and IOTLB) for that range must go now. */
  readonly onFlushWalk?: (iova: number, size: number) => void;
}

const ok0 = (mapped: number): PgtableMapResult => ({
  mappedBytes: BigInt(mapped),
  errno: null,
  warning: null,
});
const mapErr = (errno: PgtableErrno, warning: string | null): PgtableMapResult => ({
  mappedBytes: 0n,
  errno,
  warning,
});
const unmapNone = (warning: string | null): PgtableUnmapResult => ({
  unmappedBytes: 0n,
  pages: 0,
  warning,
});

/** Level whose leaf has this size, or -1 if the format has no such leaf. */
export function levelForPgsize(pgsize: bigint): number {
  if (pgsize === SZ_4K) return 3;
  if (pgsize === SZ_2M) return 2;
  if (pgsize === SZ_1G) return 1;
  return -1;
}

/** One I/O address space: the radix tree and its walker. */
export class IoPageTable {
  readonly ias: number;
  readonly oas: number;
  readonly pgsizeBitmap = PT_PGSIZE_BITMAP;
  private readonly iasLimit: bigint;
  private readonly oasLimit: bigint;
  private readonly tables: (Uint32Array | null)[] = [];
  private readonly freeIds: number[] = [];
  private readonly onFlushWalk: ((iova: number, size: number) => void) | undefined;
  /** Tables in use now, and allocated over the table's life (for memory figures). */
  tablesLive = 0;
  tablesAllocated = 0;

  constructor(cfg: IoPageTableConfig = {}) {
    this.ias = cfg.ias ?? 48;
    this.oas = cfg.oas ?? 48;
    if (this.ias > 48 || this.oas > 48) throw new RangeError('io page table: ias/oas above 48 bits');
    this.iasLimit = 1n << BigInt(this.ias);
    this.oasLimit = 1n << BigInt(this.oas);
    this.onFlushWalk = cfg.onFlushWalk;
    // The top-level table exists from allocation on, like the pgd.
    this.allocTable();
  }

  /**
   * Map `pgcount` leaves of `pgsize` from `iova` to `paddr` (io-pgtable-arm `arm_lpae_map_pages`).
   * Maps no further than the end of the table holding the first leaf.
   * @returns bytes mapped; errno EINVAL (page size not supported, no read and no write permission),
   *   ERANGE (iova or paddr beyond the address size), EEXIST (a leaf already there).
   */
  mapPages(iova: bigint, paddr: bigint, pgsize: bigint, pgcount: number, prot: PteProt): PgtableMapResult {
    const target = levelForPgsize(pgsize);
    if (target < 0) return mapErr('EINVAL', `unsupported page size 0x${pgsize.toString(16)}`);
    if (iova < 0n || iova >= this.iasLimit || paddr < 0n || paddr >= this.oasLimit) {
      return mapErr('ERANGE', 'iova or paddr beyond the address size');
    }
    if (!prot.read && !prot.write) return mapErr('EINVAL', null);
    if (pgcount <= 0) return ok0(0);
    const va = Number(iova);
    let t = 0;
    for (let lvl = 0; lvl < target; lvl++) {
      const tab = this.tables[t]!;
      const i = 2 * this.index(va, lvl);
      const lo = tab[i]!;
      if (!(lo & PTE_VALID)) {
        const child = this.allocTable();
        tab[i] = ((child * 0x1000) % TWO32) | PTE_TABLE | PTE_VALID;
        tab[i + 1] = Math.floor(child / 0x100000);
        t = child;
      } else if (!(lo & PTE_TABLE)) {
        // A block sits where the walk must go through a table.
        return mapErr('EEXIST', 'We require an unmap first');
      } else {
        t = this.tableOf(lo, tab[i + 1]!);
      }
    }
    return this.initPtes(t, target, va, Number(paddr), pgcount, prot);
  }

  /** Write up to the end of table `t`; mirrors `arm_lpae_init_pte` (check, tear down, write). */
  private initPtes(
    t: number,
    lvl: number,
    va: number,
    pa: number,
    pgcount: number,
    prot: PteProt,
  ): PgtableMapResult {
    const tab = this.tables[t]!;
    const first = this.index(va, lvl);
    const n = Math.min(pgcount, PT_ENTRIES - first);
    const size = LEVEL_SIZE[lvl]!;
    for (let k = 0; k < n; k++) {
      const i = 2 * (first + k);
      const lo = tab[i]!;
      if (!(lo & PTE_VALID)) continue;
      if (this.isLeaf(lo, lvl)) return mapErr('EEXIST', 'We require an unmap first');
      // A table where a block goes: the kernel unmaps and frees it first.
      this.freeTable(this.tableOf(lo, tab[i + 1]!), lvl + 1);
      tab[i] = 0;
      tab[i + 1] = 0;
      this.onFlushWalk?.(va + k * size, size);
    }
    const typeBits = lvl === 3 ? PTE_TABLE | PTE_VALID : PTE_VALID;
    const perm = (prot.read ? PTE_HAP_READ : 0) | (prot.write ? PTE_HAP_WRITE : 0) | PTE_AF | typeBits;
    const xn = prot.noexec ? PTE_XN_HI : 0;
    for (let k = 0; k < n; k++) {
      const out = pa + k * size;
      const i = 2 * (first + k);
      tab[i] = ((out % TWO32) & PTE_ADDR_LO) | perm;
      tab[i + 1] = (Math.floor(out / TWO32) & PTE_ADDR_HI) | xn;
    }
    return ok0(n * size);
  }

  /**
   * Clear `pgcount` leaves of `pgsize` from `iova` (io-pgtable-arm `arm_lpae_unmap_pages`), at most to
   * the end of one table. A table met where a leaf of `pgsize` would be is torn down whole.
   * @returns bytes unmapped (0: bad size, out of range, nothing mapped, or part of a block), the number
   *   of leaves cleared, and the WARN text when the kernel would warn.
   */
  unmapPages(iova: bigint, pgsize: bigint, pgcount: number): PgtableUnmapResult {
    const target = levelForPgsize(pgsize);
    if (target < 0 || pgcount <= 0) return unmapNone('unmap_pages: bad page size or count');
    if (iova < 0n || iova >= this.iasLimit) return unmapNone('unmap_pages: iova out of range');
    const va = Number(iova);
    let t = 0;
    for (let lvl = 0; lvl < target; lvl++) {
      const tab = this.tables[t]!;
      const i = 2 * this.index(va, lvl);
      const lo = tab[i]!;
      if (!(lo & PTE_VALID)) return unmapNone('unmap of an unmapped iova');
      if (this.isLeaf(lo, lvl)) return unmapNone(PARTIAL_UNMAP_WARNING);
      t = this.tableOf(lo, tab[i + 1]!);
    }
    const tab = this.tables[t]!;
    const first = this.index(va, target);
    const n = Math.min(pgcount, PT_ENTRIES - first);
    const size = LEVEL_SIZE[target]!;
    let k = 0;
    for (; k < n; k++) {
      const i = 2 * (first + k);
      const lo = tab[i]!;
      if (!(lo & PTE_VALID)) break;
      if (!this.isLeaf(lo, target)) {
        this.freeTable(this.tableOf(lo, tab[i + 1]!), target + 1);
        this.onFlushWalk?.(va + k * size, size);
      }
      tab[i] = 0;
      tab[i + 1] = 0;
    }
    const warning = k === 0 ? 'unmap of an unmapped iova' : null;
    return { unmappedBytes: BigInt(k * size), pages: k, warning };
  }

  /** What the hardware walker finds for `va` (a number below 2^ias), counting entries read. */
  walk(va: number): PgtableWalk {
    if (!(va >= 0 && va < 2 ** this.ias)) return miss(0, 0);
    let t = 0;
    for (let lvl = 0; lvl < PT_LEVELS; lvl++) {
      const tab = this.tables[t]!;
      const i = 2 * this.index(va, lvl);
      const lo = tab[i]!;
      if (!(lo & PTE_VALID)) return miss(lvl + 1, lvl);
      if (this.isLeaf(lo, lvl)) {
        const shift = LEVEL_SHIFT[lvl]!;
        const size = LEVEL_SIZE[lvl]!;
        return {
          present: true,
          levelsTouched: lvl + 1,
          level: lvl,
          pageShift: shift,
          iovaBase: va - (va % size),
          physBase: ((lo & PTE_ADDR_LO) >>> 0) + (tab[i + 1]! & PTE_ADDR_HI) * TWO32,
          read: (lo & PTE_HAP_READ) !== 0,
          write: (lo & PTE_HAP_WRITE) !== 0,
        };
      }
      t = this.tableOf(lo, tab[i + 1]!);
    }
    throw new Error('io page table: walk fell off the last level');
  }

  /**
   * Software translation (io-pgtable-arm `arm_lpae_iova_to_phys`).
   * @returns the physical address, or 0 when nothing is mapped (the kernel's convention).
   */
  iovaToPhys(iova: bigint): bigint {
    if (iova < 0n || iova >= this.iasLimit) return 0n;
    const w = this.walk(Number(iova));
    if (!w.present) return 0n;
    return BigInt(w.physBase) + (iova - BigInt(w.iovaBase));
  }

  private index(va: number, lvl: number): number {
    return Math.floor(va / LEVEL_SIZE[lvl]!) % PT_ENTRIES;
  }

  private isLeaf(lo: number, lvl: number): boolean {
    return lvl === 3 || !(lo & PTE_TABLE);
  }

  private tableOf(lo: number, hi: number): number {
    return Math.floor(((lo & PTE_ADDR_LO) >>> 0) / 0x1000) + (hi & PTE_ADDR_HI) * 0x100000;
  }

  private allocTable(): number {
    const reuse = this.freeIds.pop();
    this.tablesLive++;
    this.tablesAllocated++;
    if (reuse !== undefined) {
      this.tables[reuse] = new Uint32Array(2 * PT_ENTRIES);
      return reuse;
    }
    this.tables.push(new Uint32Array(2 * PT_ENTRIES));
    return this.tables.length - 1;
  }

  /** Free table `t` at level `lvl` and every table below it (`__arm_lpae_free_pgtable`). */
  private freeTable(t: number, lvl: number): void {
    const tab = this.tables[t];
    if (!tab) throw new Error(`io page table: freeing table ${t} twice`);
    if (lvl < 3) {
      for (let i = 0; i < 2 * PT_ENTRIES; i += 2) {
        const lo = tab[i]!;
        if (lo & PTE_VALID && !this.isLeaf(lo, lvl)) this.freeTable(this.tableOf(lo, tab[i + 1]!), lvl + 1);
      }
    }
    this.tables[t] = null;
    this.freeIds.push(t);
    this.tablesLive--;
  }
}

function miss(levelsTouched: number, level: number): PgtableWalk {
  return {
    present: false,
    levelsTouched,
    level,
    pageShift: LEVEL_SHIFT[level]!,
    iovaBase: 0,
    physBase: 0,
    read: false,
    write: false,
  };
}
