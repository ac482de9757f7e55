// The IOTLB of a simulated IOMMU: a set-associative (or, with one set, fully associative) LRU cache of
// leaf translations, tagged by domain id, page size and IOVA page number.
//
// Hardware never learns that a page-table entry went away: an entry stays until software invalidates
// it (by range, by domain, or all). That is the window lazy (flush-queue) mode lives with, so the model
// keeps it visible: when the page table drops a translation the IOMMU marks any cached copy `stale`
// (simulator knowledge, not hardware state; it changes no translation), and a hit on such an entry is
// counted in `staleHits`. Invalidation (what `iotlb_sync` / `flush_iotlb_all` reach) removes entries.
//
//   key = domainId * 2^38 + sizeCode * 2^36 + (iova >> pageShift)     sizeCode 0: 4K, 1: 2M, 2: 1G
//   set = hash(domainId, sizeCode, page) mod sets; each set is a Map kept in LRU order (oldest first)

/** One cached leaf translation. Addresses are numbers: exact below 2^53, and IOVAs are below 2^48. */
export interface IotlbEntry {
  readonly domainId: number;
  readonly pageShift: number;
  readonly iovaBase: number;
  readonly physBase: number;
  readonly read: boolean;
  readonly write: boolean;
  /** The page table no longer holds this translation; only invalidation removes it. */
  stale: boolean;
}

export interface IotlbConfig {
  /** Total entries (at least 1). */
  readonly entries: number;
  /** Entries per set; `entries` (the default) makes it fully associative. Must divide `entries`. */
  readonly ways?: number;
}

export interface IotlbStats {
  hits: number;
  misses: number;
  /** Hits on entries whose translation was already unmapped (the lazy-mode window). */
  staleHits: number;
  fills: number;
  evictions: number;
  rangeInvalidations: number;
  domainInvalidations: number;
  globalInvalidations: number;
  /** Entries removed by invalidations of any kind. */
  entriesInvalidated: number;
}

/** Page sizes the IOTLB tags, smallest first (4 KiB, 2 MiB, 1 GiB). */
export const IOTLB_PAGE_SHIFTS = [12, 21, 30] as const;
/** Domain ids must fit the key (15 bits here; hardware tags are 16 bits, ASID/VMID/DID). */
export const IOTLB_MAX_DOMAIN_ID = 0x7fff;

const PAGE_SIZES = IOTLB_PAGE_SHIFTS.map((s) => 2 ** s);
const KEY_DOMAIN = 2 ** 38;
const KEY_SIZE = 2 ** 36;
const TWO32 = 0x100000000;

const sizeCode = (pageShift: number): number => (pageShift === 12 ? 0 : pageShift === 21 ? 1 : 2);

export class Iotlb {
  readonly entries: number;
  readonly ways: number;
  readonly stats: IotlbStats = {
    hits: 0,
    misses: 0,
    staleHits: 0,
    fills: 0,
    evictions: 0,
    rangeInvalidations: 0,
    domainInvalidations: 0,
    globalInvalidations: 0,
    entriesInvalidated: 0,
  };
  private readonly sets: Map<number, IotlbEntry>[];
  /** Entries cached per domain, so range operations on a domain with none cost nothing. */
  private readonly perDomain = new Map<number, number>();

  constructor(cfg: IotlbConfig) {
    const ways = cfg.ways ?? cfg.entries;
    if (!Number.isInteger(cfg.entries) || cfg.entries < 1 || !Number.isInteger(ways) || ways < 1) {
      throw new RangeError(`iotlb: bad geometry ${cfg.entries} entries, ${ways} ways`);
    }
    if (cfg.entries % ways !== 0) throw new RangeError('iotlb: ways must divide entries');
    this.entries = cfg.entries;
    this.ways = ways;
    this.sets = Array.from({ length: cfg.entries / ways }, () => new Map<number, IotlbEntry>());
  }

  /** Entries cached now. */
  get size(): number {
    let n = 0;
    for (const s of this.sets) n += s.size;
    return n;
  }

  /** Find the entry covering `iova` for `domainId`; counts a hit (and a stale hit) or a miss. */
  lookup(domainId: number, iova: number): IotlbEntry | null {
    for (let s = 0; s < PAGE_SIZES.length; s++) {
      const shift = IOTLB_PAGE_SHIFTS[s]!;
      const page = Math.floor(iova / PAGE_SIZES[s]!);
      const key = this.key(domainId, shift, page);
      const set = this.setFor(domainId, shift, page);
      const e = set.get(key);
      if (e) {
        // Move to the most recently used end.
        set.delete(key);
        set.set(key, e);
        this.stats.hits++;
        if (e.stale) this.stats.staleHits++;
        return e;
      }
    }
    this.stats.misses++;
    return null;
  }

  /** Cache a translation found by a walk, evicting the set's least recently used entry if full. */
  fill(e: Omit<IotlbEntry, 'stale'>): IotlbEntry {
    const page = Math.floor(e.iovaBase / 2 ** e.pageShift);
    const key = this.key(e.domainId, e.pageShift, page);
    const set = this.setFor(e.domainId, e.pageShift, page);
    const entry: IotlbEntry = {
      domainId: e.domainId,
      pageShift: e.pageShift,
      iovaBase: e.iovaBase,
      physBase: e.physBase,
      read: e.read,
      write: e.write,
      stale: false,
    };
    const prev = set.get(key);
    if (prev) {
      set.delete(key);
    } else {
      if (set.size >= this.ways) {
        // Map iteration order is insertion order: the first key is the least recently used.
        const oldKey = set.keys().next().value!;
        this.dropCount(set.get(oldKey)!.domainId);
        set.delete(oldKey);
        this.stats.evictions++;
      }
      this.perDomain.set(e.domainId, (this.perDomain.get(e.domainId) ?? 0) + 1);
    }
    set.set(key, entry);
    this.stats.fills++;
    return entry;
  }

  /** Mark cached translations of `domainId` overlapping [iova, iova+size) stale; returns how many. */
  markStale(domainId: number, iova: number, size: number): number {
    return this.rangeOp(domainId, iova, size, false);
  }

  /** Invalidate entries of `domainId` overlapping [iova, iova+size) (a range TLBI). */
  invalidateRange(domainId: number, iova: number, size: number): number {
    const n = this.rangeOp(domainId, iova, size, true);
    this.stats.rangeInvalidations++;
    this.stats.entriesInvalidated += n;
    return n;
  }

  /** Invalidate every entry of one domain (by ASID/VMID/domain id). */
  invalidateDomain(domainId: number): number {
    let n = 0;
    for (const set of this.sets) {
      for (const [key, e] of set) {
        if (e.domainId === domainId) {
          set.delete(key);
          n++;
        }
      }
    }
    this.perDomain.delete(domainId);
    this.stats.domainInvalidations++;
    this.stats.entriesInvalidated += n;
    return n;
  }

  /** Invalidate everything. */
  invalidateAll(): number {
    const n = this.size;
    for (const set of this.sets) set.clear();
    this.perDomain.clear();
    this.stats.globalInvalidations++;
    this.stats.entriesInvalidated += n;
    return n;
  }

  /**
   * Mark stale (or invalidate) the entries of `domainId` overlapping the range: probe each page key
   * of each size, or scan everything when that is fewer lookups.
   */
  private rangeOp(domainId: number, iova: number, size: number, invalidate: boolean): number {
    if (size <= 0 || !this.perDomain.get(domainId)) return 0;
    const last = iova + size - 1;
    let probes = 0;
    for (const ps of PAGE_SIZES) probes += Math.floor(last / ps) - Math.floor(iova / ps) + 1;
    let n = 0;
    if (probes > this.entries) {
      for (const set of this.sets) {
        for (const [key, e] of set) {
          const end = e.iovaBase + 2 ** e.pageShift - 1;
          if (e.domainId === domainId && e.iovaBase <= last && end >= iova)
            n += this.touch(set, key, e, invalidate);
        }
      }
      return n;
    }
    for (let s = 0; s < PAGE_SIZES.length; s++) {
      const ps = PAGE_SIZES[s]!;
      const shift = IOTLB_PAGE_SHIFTS[s]!;
      const lastPage = Math.floor(last / ps);
      for (let page = Math.floor(iova / ps); page <= lastPage; page++) {
        const key = this.key(domainId, shift, page);
        const set = this.setFor(domainId, shift, page);
        const e = set.get(key);
        if (e) n += this.touch(set, key, e, invalidate);
      }
    }
    return n;
  }

  /** Invalidate or mark one entry; returns 1 if it changed. */
  private touch(set: Map<number, IotlbEntry>, key: number, e: IotlbEntry, invalidate: boolean): number {
    if (invalidate) {
      set.delete(key);
      this.dropCount(e.domainId);
      return 1;
    }
    if (e.stale) return 0;
    e.stale = true;
    return 1;
  }

  private dropCount(domainId: number): void {
    const c = this.perDomain.get(domainId)! - 1;
    if (c > 0) this.perDomain.set(domainId, c);
    else this.perDomain.delete(domainId);
  }

  private key(domainId: number, shift: number, page: number): number {
    if (domainId < 0 || domainId > IOTLB_MAX_DOMAIN_ID) throw new RangeError(`iotlb: domain id ${domainId}`);
    return domainId * KEY_DOMAIN + sizeCode(shift) * KEY_SIZE + page;
  }

  private setFor(domainId: number, shift: number, page: number): Map<number, IotlbEntry> {
    if (this.sets.length === 1) return this.sets[0]!;
    const h =
      ((page % TWO32) ^ Math.floor(page / TWO32) ^ Math.imul(domainId, 0x9e3779b1) ^ sizeCode(shift)) >>> 0;
    return this.sets[h % this.sets.length]!;
  }
}
